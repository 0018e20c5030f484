"""Liveness and readiness (readiness really talks to the database and Kafka)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaClient
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import SettingsDep, StoreDep
from api.problems import MEDIA_TYPE
from api.schemas import CheckPublic, HealthPublic
from ownercare.settings import mask_url

router = APIRouter(prefix="/health", tags=["health"])
CHECK_TIMEOUT_S = 3.0


@router.get("/live", response_model=HealthPublic)
def live() -> HealthPublic:
    return HealthPublic(status="ok")


@router.get("/ready", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
async def ready(store: StoreDep, settings: SettingsDep) -> JSONResponse:
    database, kafka = await asyncio.gather(_check_database(store), _check_kafka(settings))
    checks = {"database": database, "kafka": kafka}
    ok = all(c.ok for c in checks.values())
    body = HealthPublic(status="ok" if ok else "unavailable", checks=checks).model_dump()
    if ok:
        return JSONResponse(body)
    failed = ", ".join(f"{name}: {c.detail}" for name, c in checks.items() if not c.ok)
    return JSONResponse({**body, "type": "about:blank", "title": "Service Unavailable",
                         "status": 503, "detail": failed, "instance": "/health/ready"},
                        status_code=503, media_type=MEDIA_TYPE)


async def _check_database(store: StoreDep) -> CheckPublic:
    try:
        await asyncio.wait_for(asyncio.to_thread(store.ping), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure means not ready; say which
        return CheckPublic(ok=False, detail=f"{mask_url(store.url)}: {exc!r}")
    return CheckPublic(ok=True, detail="SELECT 1 answered")


async def _check_kafka(settings: SettingsDep) -> CheckPublic:
    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap,
                            request_timeout_ms=int(CHECK_TIMEOUT_S * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), CHECK_TIMEOUT_S)
        brokers = len(client.cluster.brokers())
    except Exception as exc:
        return CheckPublic(ok=False, detail=f"{settings.kafka_bootstrap} unreachable: {exc!r}")
    finally:
        await client.close()
    return CheckPublic(ok=True, detail=f"{brokers} broker(s) at {settings.kafka_bootstrap}")
