"""Liveness and readiness (readiness really talks to the database and Kafka); under
``ownercare run`` both also say how often each service was restarted."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaClient
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import SettingsDep, StoreDep
from api.metrics import supervisor_status
from api.problems import instance, problem
from api.schemas import CheckPublic, HealthPublic, ReadinessProblem, ServiceRestartsPublic
from config.settings import ApiSettings, mask_url
from storage.store import Store

log = logging.getLogger(__name__)
router = APIRouter(prefix="/health", tags=["health"])
CHECK_TIMEOUT_S = 3.0


@router.get("/live", response_model=HealthPublic)
def live(settings: SettingsDep) -> HealthPublic:
    """The process is up and serving HTTP (checks nothing else)."""
    return HealthPublic(status="ok", services=_services(settings))


@router.get("/ready", response_model=HealthPublic, responses={503: {"model": ReadinessProblem}})
async def ready(request: Request, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Ready when the database answers ``SELECT 1`` and a Kafka broker answers metadata.

    503 (problem+json) names every failed check; ``checks`` has the detail of each.
    """
    database, kafka = await asyncio.gather(_check_database(store), _check_kafka(settings))
    checks = {"database": database, "kafka": kafka}
    failed = {name: c for name, c in checks.items() if not c.ok}
    dumped = {name: c.model_dump() for name, c in checks.items()}
    if not failed:
        return JSONResponse(HealthPublic(status="ok", checks=checks,
                                         services=_services(settings)).model_dump())
    log.warning("api_not_ready failed=%s", ",".join(failed))
    detail = "; ".join(f"{name}: {c.detail}" for name, c in failed.items())
    return problem(503, f"not ready: {detail}", instance(request), checks=dumped)


def _services(settings: ApiSettings) -> dict[str, ServiceRestartsPublic]:
    return {name: ServiceRestartsPublic.model_validate(entry)
            for name, entry in supervisor_status(settings.state_dir).items()}


async def _check_database(store: Store) -> CheckPublic:
    try:
        await asyncio.wait_for(asyncio.to_thread(store.ping), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure means not ready; say which
        return CheckPublic(ok=False, detail=f"{mask_url(store.url)}: {exc!r}")
    return CheckPublic(ok=True, detail="SELECT 1 answered")


async def _check_kafka(settings: ApiSettings) -> CheckPublic:
    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap,
                            request_timeout_ms=int(CHECK_TIMEOUT_S * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), CHECK_TIMEOUT_S)
        brokers = len(client.cluster.brokers())
    except Exception as exc:  # unreachable, timed out, refused: all mean "not ready"
        return CheckPublic(ok=False, detail=f"{settings.kafka_bootstrap} unreachable: {exc!r}")
    finally:
        await client.close()
    return CheckPublic(ok=True, detail=f"{brokers} broker(s) at {settings.kafka_bootstrap}")
