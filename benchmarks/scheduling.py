"""Speed and quality of the 1:1 meeting scheduler (``marketplace/scheduling.py``) on a synthetic 供需对接会.

    .venv/bin/python benchmarks/scheduling.py                  # the docs/benchmarks.md numbers
    .venv/bin/python benchmarks/scheduling.py --seed 3 --runs 5 --json benchmarks/out/scheduling.json

The event (defaults): 60 needs with 10 confirmed firms each (ranks 1–10, about 20 % of the pairs
requested by the publisher), drawn from 300 firms, so that many firms are confirmed for several
needs; about 40 publishers owning 1–3 needs each (1.5 on average); 3 sessions of 3 hours with a
20-minute tea break in each, 20-minute slots, 30 tables, at most 6 meetings per firm and 8 per need.

It prints, for the HiGHS scheduler (median time of ``--runs`` runs) and for the greedy placement:
meetings placed, requested meetings placed, the objective (in the units of
``scheduling.Priorities``), the solver's dual bound and gap, the total rank weight placed, and how
many fewer meetings (share) and requested meetings the greedy placement gets. Every schedule is
checked with ``validate``. It is a measurement script, not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marketplace.scheduling import (  # noqa: E402
    Break,
    Candidate,
    Plan,
    Schedule,
    Session,
    greedy,
    rank_weight,
    schedule,
    validate,
)

BEIJING = ZoneInfo("Asia/Shanghai")


def make_event(
    seed: int,
    needs: int,
    per_need: int,
    firms: int,
    requested_share: float,
    skew: float,
    tables: int,
    max_per_firm: int,
    max_per_need: int,
) -> tuple[Plan, list[Candidate]]:
    """A plan for one day with three 3-hour sessions and a synthetic candidate list."""
    rng = random.Random(seed)
    sessions, breaks = [], []
    for name, start in (
        ("第一天上午", datetime(2026, 12, 8, 8, 30, tzinfo=BEIJING)),
        ("第一天下午", datetime(2026, 12, 8, 13, 30, tzinfo=BEIJING)),
        ("第二天上午", datetime(2026, 12, 9, 8, 30, tzinfo=BEIJING)),
    ):
        sessions.append(Session(start, start + timedelta(hours=3), name))
        pause = start + timedelta(minutes=80)
        breaks.append(Break(pause, pause + timedelta(minutes=20)))
    plan = Plan(
        tuple(sessions),
        slot_minutes=20,
        tables=tables,
        breaks=tuple(breaks),
        max_per_firm=max_per_firm,
        max_per_need=max_per_need,
    )
    # Publishers own 1–3 needs (1.5 on average): cut the needs into runs of those lengths.
    owners: list[int] = []
    while len(owners) < needs:
        owners.extend([len(set(owners))] * rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0])
    owners = owners[:needs]
    # Every firm is confirmed at least once; the other confirmations favour popular firms
    # (weight 1/rank**skew), so a few firms are confirmed for many needs.
    firm_ids = list(range(10_000, 10_000 + firms))
    extra = needs * per_need - firms
    pool = firm_ids + rng.choices(firm_ids, [1 / (k + 1) ** skew for k in range(firms)], k=max(extra, 0))
    rng.shuffle(pool)
    shortlists: list[list[int]] = [[] for _ in range(needs)]
    for firm in pool:
        open_needs = [n for n in range(needs) if len(shortlists[n]) < per_need and firm not in shortlists[n]]
        if open_needs:
            shortlists[rng.choice(open_needs)].append(firm)
    candidates = []
    for need, shortlist in enumerate(shortlists):
        for rank, firm in enumerate(shortlist, start=1):
            candidates.append(
                Candidate(
                    need_id=need,
                    publisher_id=owners[need],
                    firm_id=firm,
                    weight=rank_weight(rank, len(shortlist)),
                    requested=rng.random() < requested_share,
                )
            )
    return plan, candidates


def describe(plan: Plan, candidates: list[Candidate], result: Schedule) -> dict[str, object]:
    problems = validate(plan, result.meetings)
    if problems:
        raise SystemExit(f"invalid schedule: {problems[0].message}")
    return {
        "status": result.status,
        "meetings": len(result.meetings),
        "requested_placed": result.requested_placed,
        "requested_total": result.requested_total,
        "requested_share": round(result.requested_placed / max(result.requested_total, 1), 4),
        "objective": round(result.objective, 3),
        "dual_bound": None if result.dual_bound is None else round(result.dual_bound, 3),
        "gap": result.gap,
        "weight_total": round(sum(c.weight for c in candidates) - sum(c.weight for c in result.unplaced), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--needs", type=int, default=60)
    parser.add_argument("--per-need", type=int, default=10)
    parser.add_argument("--firms", type=int, default=300)
    parser.add_argument("--requested", type=float, default=0.2)
    parser.add_argument("--skew", type=float, default=0.5, help="firm popularity exponent")
    parser.add_argument("--tables", type=int, default=30)
    parser.add_argument("--max-per-firm", type=int, default=6)
    parser.add_argument("--max-per-need", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    plan, candidates = make_event(
        args.seed,
        args.needs,
        args.per_need,
        args.firms,
        args.requested,
        args.skew,
        args.tables,
        args.max_per_firm,
        args.max_per_need,
    )
    firms_used = {c.firm_id for c in candidates}
    per_firm = [sum(1 for c in candidates if c.firm_id == f) for f in firms_used]
    event = {
        "needs": args.needs,
        "publishers": len({c.publisher_id for c in candidates}),
        "firms": len(firms_used),
        "firms_on_several_needs": sum(1 for n in per_firm if n > 1),
        "most_needs_per_firm": max(per_firm),
        "candidates": len(candidates),
        "requested": sum(c.requested for c in candidates),
        "slots": len(plan.slots),
        "tables": plan.tables,
        "caps": {"firm": plan.max_per_firm, "need": plan.max_per_need},
    }
    print("event:", json.dumps(event, ensure_ascii=False))

    times, result = [], None
    for _ in range(args.runs):
        began = time.perf_counter()
        result = schedule(plan, candidates, time_limit=args.time_limit)
        times.append(time.perf_counter() - began)
    assert result is not None
    solver = describe(plan, candidates, result) | {
        "seconds_median": round(statistics.median(times), 3),
        "seconds_all": [round(t, 3) for t in times],
    }
    print("HiGHS :", json.dumps(solver, ensure_ascii=False))

    began = time.perf_counter()
    quick = greedy(plan, candidates)
    greedy_seconds = time.perf_counter() - began
    heuristic = describe(plan, candidates, quick) | {"seconds": round(greedy_seconds, 3)}
    heuristic["meetings_short"] = round(1 - len(quick.meetings) / max(len(result.meetings), 1), 4)
    heuristic["requested_short"] = result.requested_placed - quick.requested_placed
    print("greedy:", json.dumps(heuristic, ensure_ascii=False))

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "args": vars(args) | {"json": str(args.json)},
            "event": event,
            "highs": solver,
            "greedy": heuristic,
        }
        args.json.write_text(json.dumps(payload, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
