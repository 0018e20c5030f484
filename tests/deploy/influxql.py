"""A parser for the InfluxQL the Grafana dashboards use, and a check of each query against the
schema the archive writes.

No InfluxQL parser for Python exists on PyPI, so this follows the InfluxQL specification
(https://docs.influxdata.com/influxdb/v1/query_language/spec/) for the statements a dashboard
needs: SELECT (with subqueries, WHERE, GROUP BY time and tags, fill, ORDER BY, LIMIT, OFFSET)
and SHOW TAG VALUES. It accepts only what InfluxDB 2.x (v1 compatibility API) and InfluxDB 3
both run: SLIMIT, SOFFSET, INTO and the functions InfluxDB 3 lacks are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Functions both InfluxDB 2.x and InfluxDB 3 run (InfluxDB 3's "InfluxQL feature support").
FUNCTIONS = frozenset({
    "count", "distinct", "mean", "median", "mode", "spread", "stddev", "sum",
    "bottom", "first", "last", "max", "min", "percentile", "top",
    "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cumulative_sum", "derivative",
    "difference", "elapsed", "exp", "floor", "ln", "log", "log2", "log10", "moving_average",
    "non_negative_derivative", "non_negative_difference", "pow", "round", "sin", "sqrt", "tan",
    "now",
})
# Functions whose first argument must be a numeric field.
NUMERIC = frozenset({"mean", "median", "spread", "stddev", "sum", "percentile",
                     "derivative", "non_negative_derivative", "difference",
                     "non_negative_difference", "moving_average", "cumulative_sum"})
KEYWORDS = frozenset({
    "select", "from", "where", "group", "by", "fill", "order", "limit", "offset", "slimit",
    "soffset", "as", "and", "or", "show", "tag", "values", "with", "key", "in", "asc", "desc",
    "into", "tz",
})
FILL_OPTIONS = frozenset({"null", "none", "previous", "linear"})

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<duration>\d+(?:ns|ms|us|µs|u|µ|s|m|h|d|w)\b)
  | (?P<number>\d+(?:\.\d+)?|\.\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<qident>"(?:[^"\\]|\\.)*")
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op>=~|!~|!=|<>|<=|>=|::|[=<>+\-*/%(),.;])
""", re.VERBOSE)


class InfluxQLError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str  # duration, number, ident, qident, string, op, regex, end
    text: str
    pos: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "ident" else ""


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        # A regex literal can only follow =~ or !~ (elsewhere / is division).
        if tokens and tokens[-1].text in ("=~", "!~"):
            match = re.compile(r"\s*/((?:[^/\\]|\\.)*)/").match(query, pos)
            if match is None:
                raise InfluxQLError(f"expected a /regex/ at {pos}: {query[pos:pos + 20]!r}")
            tokens.append(Token("regex", match.group(1), pos))
            pos = match.end()
            continue
        match = _TOKEN.match(query, pos)
        if match is None:
            raise InfluxQLError(f"unexpected character at {pos}: {query[pos:pos + 20]!r}")
        if match.lastgroup != "ws":
            assert match.lastgroup is not None
            tokens.append(Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", pos))
    return tokens


# Expression nodes: ("ref", name) | ("call", name, args) | ("lit", value) | ("star",)
# | ("regex", pattern) | ("bin", op, lhs, rhs) | ("neg", expr)
Expr = tuple[Any, ...]


@dataclass
class Select:
    fields: list[tuple[Expr, str | None]]
    source: str | Select
    where: Expr | None = None
    group_tags: list[str] = field(default_factory=list)
    group_time: str | None = None


@dataclass
class ShowTagValues:
    measurement: str
    key: str
    where: Expr | None = None


class Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0

    # ------------------------------------------------------------------ tokens
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, what: str) -> InfluxQLError:
        tok = self.tok
        found = "the end" if tok.kind == "end" else repr(tok.text)
        return InfluxQLError(f"expected {what} at {tok.pos}, found {found} in {self.query!r}")

    def next(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def at_word(self, *words: str) -> bool:
        return self.tok.word in words

    def expect_word(self, word: str) -> None:
        if not self.at_word(word):
            raise self.fail(word.upper())
        self.next()

    def at_op(self, op: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == op

    def expect_op(self, op: str) -> None:
        if not self.at_op(op):
            raise self.fail(repr(op))
        self.next()

    def identifier(self) -> str:
        tok = self.tok
        if tok.kind == "qident":
            self.next()
            return re.sub(r"\\(.)", r"\1", tok.text[1:-1])
        if tok.kind == "ident" and tok.word not in KEYWORDS:
            self.next()
            return tok.text
        raise self.fail("an identifier")

    # ------------------------------------------------------------------ statements
    def statement(self) -> Select | ShowTagValues:
        if self.at_word("select"):
            stmt: Select | ShowTagValues = self.select()
        elif self.at_word("show"):
            stmt = self.show_tag_values()
        else:
            raise self.fail("SELECT or SHOW TAG VALUES")
        if self.at_op(";"):
            self.next()
        if self.tok.kind != "end":
            raise self.fail("the end of the statement")
        return stmt

    def select(self) -> Select:
        self.expect_word("select")
        fields = [self.field()]
        while self.at_op(","):
            self.next()
            fields.append(self.field())
        if self.at_word("into"):
            raise self.fail("FROM (INTO writes data: not for a dashboard)")
        self.expect_word("from")
        if self.at_op("("):
            self.next()
            source: str | Select = self.select()
            self.expect_op(")")
        else:
            source = self.measurement()
        if self.at_op(","):
            raise self.fail("one measurement or subquery")
        stmt = Select(fields, source)
        if self.at_word("where"):
            self.next()
            stmt.where = self.expr()
        if self.at_word("group"):
            self.next()
            self.expect_word("by")
            self.dimension(stmt)
            while self.at_op(","):
                self.next()
                self.dimension(stmt)
            if self.at_word("fill"):
                self.next()
                self.expect_op("(")
                option = self.next()
                if not (option.word in FILL_OPTIONS or option.kind == "number"):
                    raise InfluxQLError(f"fill({option.text}) is not a fill option")
                self.expect_op(")")
        if self.at_word("order"):
            self.next()
            self.expect_word("by")
            if self.identifier() != "time":
                raise InfluxQLError("ORDER BY takes only time")
            if self.at_word("asc", "desc"):
                self.next()
        for clause in ("limit", "offset"):
            if self.at_word(clause):
                self.next()
                if self.next().kind != "number":
                    raise InfluxQLError(f"{clause.upper()} takes a number")
        if self.at_word("slimit", "soffset"):
            raise self.fail("the end (SLIMIT and SOFFSET do not exist in InfluxDB 3)")
        return stmt

    def show_tag_values(self) -> ShowTagValues:
        self.expect_word("show")
        self.expect_word("tag")
        self.expect_word("values")
        self.expect_word("from")
        measurement = self.measurement()
        self.expect_word("with")
        self.expect_word("key")
        self.expect_op("=")
        stmt = ShowTagValues(measurement, self.identifier())
        if self.at_word("where"):
            self.next()
            stmt.where = self.expr()
        for clause in ("limit", "offset"):
            if self.at_word(clause):
                self.next()
                if self.next().kind != "number":
                    raise InfluxQLError(f"{clause.upper()} takes a number")
        return stmt

    def measurement(self) -> str:
        parts = [self.identifier()]
        while self.at_op(".") and len(parts) < 3:  # database.retention_policy.measurement
            self.next()
            parts.append(self.identifier())
        return parts[-1]

    def field(self) -> tuple[Expr, str | None]:
        expr = self.expr()
        alias = None
        if self.at_word("as"):
            self.next()
            alias = self.identifier()
        return expr, alias

    def dimension(self, stmt: Select) -> None:
        if self.at_word("time") and self.tokens[self.i + 1].text == "(":
            self.next()
            self.expect_op("(")
            interval = self.next()
            if interval.kind != "duration":
                raise InfluxQLError(f"time() takes a duration, not {interval.text!r}")
            if self.at_op(","):
                self.next()
                if self.next().kind != "duration":
                    raise InfluxQLError("time()'s offset must be a duration")
            self.expect_op(")")
            stmt.group_time = interval.text
        else:
            stmt.group_tags.append(self.identifier())

    # ------------------------------------------------------------------ expressions
    def expr(self) -> Expr:
        lhs = self.conjunction()
        while self.at_word("or"):
            self.next()
            lhs = ("bin", "or", lhs, self.conjunction())
        return lhs

    def conjunction(self) -> Expr:
        lhs = self.comparison()
        while self.at_word("and"):
            self.next()
            lhs = ("bin", "and", lhs, self.comparison())
        return lhs

    def comparison(self) -> Expr:
        lhs = self.additive()
        if self.tok.kind == "op" and self.tok.text in ("=", "!=", "<>", "<", "<=", ">", ">="):
            op = self.next().text
            return ("bin", op, lhs, self.additive())
        if self.tok.kind == "op" and self.tok.text in ("=~", "!~"):
            op = self.next().text
            pattern = self.next()
            if pattern.kind != "regex":
                raise InfluxQLError(f"{op} takes a /regex/")
            return ("bin", op, lhs, ("regex", pattern.text))
        return lhs

    def additive(self) -> Expr:
        lhs = self.multiplicative()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op = self.next().text
            lhs = ("bin", op, lhs, self.multiplicative())
        return lhs

    def multiplicative(self) -> Expr:
        lhs = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "%"):
            op = self.next().text
            lhs = ("bin", op, lhs, self.unary())
        return lhs

    def unary(self) -> Expr:
        if self.at_op("-"):
            self.next()
            return ("neg", self.primary())
        return self.primary()

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind in ("number", "duration", "string"):
            self.next()
            return ("lit", tok.text)
        if tok.word in ("true", "false"):
            self.next()
            return ("lit", tok.word)
        if self.at_op("*"):
            self.next()
            return ("star",)
        if self.at_op("("):
            self.next()
            inner = self.expr()
            self.expect_op(")")
            return inner
        if tok.kind == "ident" and self.tokens[self.i + 1].text == "(":
            name = self.next().word
            if name not in FUNCTIONS:
                raise InfluxQLError(f"{name}() is not an InfluxQL function that InfluxDB 2.x "
                                    "and 3 both run")
            self.expect_op("(")
            args: list[Expr] = []
            if not self.at_op(")"):
                args.append(self.expr())
                while self.at_op(","):
                    self.next()
                    args.append(self.expr())
            self.expect_op(")")
            return ("call", name, args)
        name = self.identifier()
        if self.at_op("::"):
            self.next()
            if self.next().word not in ("float", "integer", "string", "boolean", "field", "tag"):
                raise InfluxQLError(f"{name}:: takes a type")
        return ("ref", name)


def parse(query: str) -> Select | ShowTagValues:
    return Parser(query).statement()


# ---------------------------------------------------------------------------- the schema check

Schema = dict[str, tuple[frozenset[str], dict[str, str]]]  # measurement -> (tags, field types)


def check(stmt: Select | ShowTagValues, schema: Schema) -> None:
    """Raise InfluxQLError naming any measurement, field or tag the archive never writes, or a
    numeric function applied to a non-numeric field."""
    if isinstance(stmt, ShowTagValues):
        tags, _ = _measurement(stmt.measurement, schema)
        if stmt.key not in tags:
            raise InfluxQLError(f"{stmt.measurement!r} has no tag {stmt.key!r}")
        _check_refs(stmt.where, tags | {"time"}, {}, stmt.measurement)
        return
    _columns(stmt, schema)


def _measurement(name: str, schema: Schema) -> tuple[frozenset[str], dict[str, str]]:
    if name not in schema:
        raise InfluxQLError(f"the archive writes no measurement {name!r} "
                            f"(only {', '.join(sorted(schema))})")
    return schema[name]


def _columns(stmt: Select, schema: Schema) -> tuple[frozenset[str], dict[str, str]]:
    """Check ``stmt``; return the tags and fields (with types) of its result."""
    if isinstance(stmt.source, Select):
        tags, fields = _columns(stmt.source, schema)
        where = "the subquery"
    else:
        tags, fields = _measurement(stmt.source, schema)
        where = repr(stmt.source)
    known = tags | fields.keys() | {"time"}
    calls = [e for e, _ in stmt.fields if e[0] == "call"]
    if calls and any(e[0] == "ref" for e, _ in stmt.fields):
        raise InfluxQLError(f"{where}: mixing functions and raw fields in one SELECT")
    if stmt.group_time and not calls:
        raise InfluxQLError(f"{where}: GROUP BY time() needs a function of the fields")
    out: dict[str, str] = {}
    for expr, alias in stmt.fields:
        _check_refs(expr, known, fields, where)
        name = alias or (expr[1] if expr[0] in ("ref", "call") else "expr")
        out[name] = _type_of(expr, fields)
    _check_refs(stmt.where, known, fields, where)
    if not any(_refs(e) & (fields.keys() | {"*"}) for e, _ in stmt.fields):
        raise InfluxQLError(f"{where}: the SELECT names no field (tags alone return no rows)")
    for tag in stmt.group_tags:
        if tag not in tags:
            raise InfluxQLError(f"GROUP BY {tag!r}: {where} has no such tag")
    return frozenset(stmt.group_tags), out


def _check_refs(expr: Expr | None, known: frozenset[str] | set[str],
                fields: dict[str, str], where: str) -> None:
    if expr is None:
        return
    kind = expr[0]
    if kind == "ref" and expr[1] not in known:
        raise InfluxQLError(f"{where} has no field or tag {expr[1]!r}")
    if kind == "call":
        name, args = expr[1], expr[2]
        if name in NUMERIC and args and args[0][0] == "ref" \
                and fields.get(args[0][1], "float") not in ("float", "integer"):
            raise InfluxQLError(f"{name}({args[0][1]!r}): the field is "
                                f"{fields[args[0][1]]}, not a number")
        for arg in args:
            _check_refs(arg, known, fields, where)
    if kind == "bin":
        _check_refs(expr[2], known, fields, where)
        _check_refs(expr[3], known, fields, where)
    if kind == "neg":
        _check_refs(expr[1], known, fields, where)


def _refs(expr: Expr) -> set[str]:
    if expr[0] == "star":
        return {"*"}
    if expr[0] == "ref":
        return {expr[1]}
    if expr[0] == "call":
        return set().union(*map(_refs, expr[2]))
    if expr[0] == "bin":
        return _refs(expr[2]) | _refs(expr[3])
    if expr[0] == "neg":
        return _refs(expr[1])
    return set()


def _type_of(expr: Expr, fields: dict[str, str]) -> str:
    if expr[0] == "ref":
        return fields.get(expr[1], "string")  # a tag
    if expr[0] == "call" and expr[1] in ("first", "last", "min", "max", "mode", "distinct") \
            and expr[2] and expr[2][0][0] == "ref":
        return fields.get(expr[2][0][1], "string")
    if expr[0] == "call" and expr[1] == "count":
        return "integer"
    return "float"
