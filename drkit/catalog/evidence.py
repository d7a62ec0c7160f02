"""Each plan's evidence log in the catalog: one row per signed record, appended at the next
position in one transaction. The (plan, seq) key admits one record per position, so two
runners appending at once never fork the chain: the loser of a race reads the new head and
signs again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exc, func, select

from drkit.catalog.database import Database
from drkit.catalog.models import EvidenceRecord
from drkit.errors import CatalogError

#: seals a record: (seq, previous hash, time) -> (line, hash)
Sealer = Callable[[int, str, datetime], tuple[str, str]]
GENESIS = "0" * 64
ATTEMPTS = 50


@dataclass(frozen=True)
class EvidenceHead:
    """The newest record of a plan's evidence log."""

    plan: str
    count: int
    hash: str
    recorded_at: datetime


def append(
    database: Database, plan: str, seal: Sealer, now: Callable[[], datetime]
) -> EvidenceHead:
    """Append the record ``seal`` makes at the plan's next position; retried when another
    runner took that position first."""
    for _ in range(ATTEMPTS):
        try:
            with database.transaction() as session:
                newest = session.execute(
                    select(EvidenceRecord.seq, EvidenceRecord.record_hash)
                    .where(EvidenceRecord.plan == plan)
                    .order_by(EvidenceRecord.seq.desc())
                    .limit(1)
                ).first()
                seq, prev = (newest[0] + 1, newest[1]) if newest else (1, GENESIS)
                moment = now()
                line, digest = seal(seq, prev, moment)
                session.add(
                    EvidenceRecord(
                        plan=plan, seq=seq, record_hash=digest, recorded_at=moment, record=line
                    )
                )
        except exc.IntegrityError:
            continue  # another runner appended at this position: chain onto its record
        return EvidenceHead(plan, seq, digest, moment)
    raise CatalogError(f"could not append to the evidence log of plan {plan!r}; try again")


def read_log(database: Database, plan: str) -> list[str]:
    """Every record line of a plan's log, in order."""
    with database.reading() as session:
        return list(
            session.scalars(
                select(EvidenceRecord.record)
                .where(EvidenceRecord.plan == plan)
                .order_by(EvidenceRecord.seq)
            )
        )


def read_heads(database: Database, plans: Sequence[str]) -> dict[str, EvidenceHead]:
    """The head of each plan's log (plans without records are absent): one query."""
    if not plans:
        return {}
    newest = (
        select(EvidenceRecord.plan, func.max(EvidenceRecord.seq).label("seq"))
        .where(EvidenceRecord.plan.in_(list(plans)))
        .group_by(EvidenceRecord.plan)
        .subquery()
    )
    query = select(
        EvidenceRecord.plan,
        EvidenceRecord.seq,
        EvidenceRecord.record_hash,
        EvidenceRecord.recorded_at,
    ).join(
        newest,
        (EvidenceRecord.plan == newest.c.plan) & (EvidenceRecord.seq == newest.c.seq),
    )
    with database.reading() as session:
        return {
            plan: EvidenceHead(plan, seq, digest, moment)
            for plan, seq, digest, moment in session.execute(query)
        }


def import_log(
    database: Database, plan: str, records: Sequence[tuple[int, str, datetime, str]]
) -> bool:
    """Adopt a log found in a store, ``(seq, hash, recorded_at, line)`` in order, into a
    catalog that holds none of the plan's records (a rebuilt catalog): False when the plan
    already has records, or another runner adopted them first."""
    try:
        with database.transaction() as session:
            if session.scalar(select(func.count()).where(EvidenceRecord.plan == plan)):
                return False
            session.add_all(
                EvidenceRecord(plan=plan, seq=seq, record_hash=digest, recorded_at=at, record=line)
                for seq, digest, at, line in records
            )
    except exc.IntegrityError:
        return False
    return True
