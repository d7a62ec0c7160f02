"""The evidence log in the catalog, on SQLite and PostgreSQL: records chain in order, each
plan's head is read in one query, and runners appending at once (each with its own
connection) never fork the chain: every record lands at its own position, linked to the one
before."""

from __future__ import annotations

import threading
from pathlib import Path

from drkit.catalog import Catalog
from drkit.crypto.evidence import GENESIS, seal_record, verify_chain
from drkit.crypto.signing import Ed25519FileSigner, PublicKey, generate_signing_key

WRITERS, EACH = 6, 8


def test_concurrent_appenders_never_fork_the_chain(catalog_url: str, tmp_path: Path) -> None:
    public, _ = generate_signing_key(tmp_path / "k.key")
    signer = Ed25519FileSigner(f"file:{tmp_path / 'k.key'}")
    Catalog.open(catalog_url).close()
    failures: list[BaseException] = []

    def append(writer: int) -> None:
        try:
            with Catalog.open(catalog_url) as catalog:
                for each in range(EACH):
                    catalog.append_evidence(
                        "api",
                        lambda seq, prev, moment, n=each: seal_record(
                            "api", seq, prev, moment.isoformat(), {"w": writer, "n": n}, signer
                        ),
                    )
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with Catalog.open(catalog_url) as catalog:
        lines = catalog.read_evidence("api")
        head = catalog.evidence_heads(["api", "other"])
    check = verify_chain(lines, PublicKey(public.read_bytes()))
    assert check.problems == [] and check.count == WRITERS * EACH
    assert set(head) == {"api"} and head["api"].count == check.count
    assert head["api"].hash == check.head


def test_each_plan_has_its_own_chain(catalog: Catalog, tmp_path: Path) -> None:
    generate_signing_key(tmp_path / "k.key")
    signer = Ed25519FileSigner(f"file:{tmp_path / 'k.key'}")
    for plan in ("api", "billing", "api"):
        catalog.append_evidence(
            plan, lambda seq, prev, moment, p=plan: seal_record(p, seq, prev, "t", {}, signer)
        )
    heads = catalog.evidence_heads(["api", "billing"])
    assert (heads["api"].count, heads["billing"].count) == (2, 1)
    assert '"prev":"' + GENESIS in catalog.read_evidence("billing")[0]
