"""The drill's table (rich): one row per fault, a total, and the violations naming checkout ids."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chaos.drill import DrillResult, PhaseResult
from chaos.load import outcome_counts

CLEAN_ENDS = ("quoted", "cancelled", "expired", "none")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _row(phase: PhaseResult) -> list[str]:
    stuck = phase.count("placing", "failed")
    violations = len(phase.violations)
    return [
        phase.fault.name,
        str(phase.under_fault),
        str(len(phase.attempts)),
        str(phase.count("completed")),
        str(phase.count(*CLEAN_ENDS)),
        f"[red]{stuck}[/]" if stuck else "0",
        _seconds(phase.recovery_seconds),
        _seconds(phase.settle_seconds),
        f"[bold red]{violations}[/]" if violations else "[green]0[/]",
    ]


def table(result: DrillResult) -> Table:
    grid = Table(title="Fault drill: checkouts and invariants after each fault", title_justify="left")
    for header, justify in (
        ("fault", "left"),
        ("under fault", "right"),
        ("attempted", "right"),
        ("completed", "right"),
        ("failed cleanly", "right"),
        ("stuck/FAILED", "right"),
        ("recovery s", "right"),
        ("settled s", "right"),
        ("violations", "right"),
    ):
        grid.add_column(header, justify=justify)  # type: ignore[arg-type]
    for phase in result.phases:
        grid.add_row(*_row(phase))
    everyone = result.attempts
    status_of = result.final.status_of
    recoveries = [p.recovery_seconds for p in result.phases if p.recovery_seconds is not None]
    grid.add_section()
    grid.add_row(
        "all (incl. warm-up)",
        str(sum(p.under_fault for p in result.phases)),
        str(len(everyone)),
        str(sum(1 for a in everyone if status_of.get(a.checkout_id) == "completed")),
        str(sum(1 for a in everyone if status_of.get(a.checkout_id, "none") in CLEAN_ENDS)),
        str(sum(1 for a in everyone if status_of.get(a.checkout_id) in ("placing", "failed"))),
        f"max {max(recoveries):.1f}" if recoveries else "-",
        "",
        str(len(result.violations)),
    )
    return grid


def print_report(result: DrillResult, console: Console) -> None:
    console.print()
    console.print(table(result))
    minutes = (result.ended_at - result.started_at) / 60
    console.print(
        f"{len(result.phases)} faults injected in {minutes:.1f} min; "
        f"{len(result.attempts)} checkouts attempted; final state: "
        + ", ".join(f"{status} {count}" for status, count in sorted(result.final.statuses.items()))
    )
    console.print(
        "as the clients saw them: "
        + ", ".join(f"{outcome} {n}" for outcome, n in outcome_counts(result.attempts).items())
    )
    if result.violations:
        console.print(f"[bold red]{len(result.violations)} violation(s):[/]")
        for violation in result.violations:
            console.print(f"  [red]{escape(str(violation))}[/]", soft_wrap=True)
    else:
        console.print("[bold green]0 violations[/]: every invariant held after every fault")
