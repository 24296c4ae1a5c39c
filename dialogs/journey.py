"""Journeys assembled into one validated set, and drawn.

`build_journeys` takes the journeys (`dialogs.screens.Journey`), says which one a caller starts in
(new numbers, then each role in order), and checks the whole set before the gateway serves a hop:
every target exists, every screen is reachable, every text and option label is in every language,
every action, validator and condition is known, every outcome an action can give leads somewhere,
and every PIN goes straight to an action. A problem stops start-up with a `JourneyError` naming
each screen and key at fault.

Adding a journey for a role (the agent menu) is: write its screens, add it to the list and name its
role in ``homes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dialogs.catalog import Catalogs
from dialogs.screens import (
    BACK,
    ENGINE_TARGETS,
    HOME,
    RESUME,
    Action,
    Confirm,
    End,
    Input,
    Journey,
    Menu,
    Notice,
    Option,
    Screen,
    targets,
)
from dialogs.steps import ActionSpec, Condition, Validator


class JourneyError(Exception):
    """Journeys that cannot be served; the message lists every problem."""


#: The engine's own screens: the offer to resume a dropped session, and the screen an unexpected
#: failure or a session taken over by a redial ends on.
SYSTEM = Journey("system", "sys.resume", (
    Menu("sys.resume", "sys.resume", (Option("sys.resume.yes", RESUME), Option("sys.resume.no", HOME))),
    End("sys.error", "sys.error"),
    End("sys.moved", "sys.moved"),
    End("sys.locked", "sys.locked"),
    End("sys.unsupported", "sys.unsupported"),
    End("sys.closed", "err.closed"),
))

#: Catalog keys the engine itself uses (navigation labels and generic notes).
ENGINE_KEYS = ("nav.more", "nav.back", "nav.home", "note.invalid_choice", "note.empty")


@dataclass(frozen=True)
class JourneySet:
    """The validated journeys, by screen id, and where each caller starts."""

    journeys: tuple[Journey, ...]
    screens: Mapping[str, Screen]
    registration: str
    #: (role, journey name) in priority order: a caller starts in the first whose role they hold.
    homes: tuple[tuple[str, str], ...]
    actions: Mapping[str, ActionSpec]
    validators: Mapping[str, Validator]
    conditions: Mapping[str, Condition]
    catalogs: Catalogs

    def screen(self, screen_id: str) -> Screen:
        return self.screens[screen_id]

    def journey(self, name: str) -> Journey:
        return next(j for j in self.journeys if j.name == name)

    def home_for(self, roles: Iterable[str]) -> str:
        held = set(roles)
        for role, name in self.homes:
            if role in held:
                return self.journey(name).start
        return self.journey(self.homes[-1][1]).start

    @property
    def registration_start(self) -> str:
        return self.journey(self.registration).start

    def journey_of(self, screen_id: str) -> str:
        for j in self.journeys:
            if any(s.id == screen_id for s in j.screens):
                return j.name
        return "?"


def build_journeys(
    journeys: Iterable[Journey], *, registration: str, homes: Iterable[tuple[str, str]], catalogs: Catalogs,
    actions: Mapping[str, ActionSpec], validators: Mapping[str, Validator],
    conditions: Mapping[str, Condition] | None = None,
) -> JourneySet:
    """Assemble and check; raises `JourneyError` listing every problem found."""
    every = (*journeys, SYSTEM)
    homes = tuple(homes)
    conditions = MappingProxyType(dict(conditions or {}))
    problems: list[str] = []
    screens: dict[str, Screen] = {}
    names = [j.name for j in every]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"journey {name} is defined twice")
    for journey in every:
        for screen in journey.screens:
            if screen.id in screens:
                problems.append(f"screen {screen.id} is defined twice")
            screens[screen.id] = screen
        if journey.start not in {s.id for s in journey.screens}:
            problems.append(f"journey {journey.name} starts at {journey.start}, which is not one of its screens")
    known_journeys = set(names)
    for role, name in homes:
        if name not in known_journeys:
            problems.append(f"role {role} starts in unknown journey {name}")
    if registration not in known_journeys:
        problems.append(f"registration journey {registration} is unknown")
    if not homes:
        problems.append("no journey for registered callers (homes is empty)")

    for key in ENGINE_KEYS:
        if not catalogs.has(key):
            problems.append(f"catalog key {key} (used by the engine) is missing")
    for screen in screens.values():
        problems.extend(_screen_problems(screen, screens, catalogs, actions, validators, conditions))

    roots = [j.start for j in every if j.name == registration or j.name == "system"
             or any(name == j.name for _, name in homes)]
    reached = _reachable(roots, screens)
    # The engine's own end screens are reached from code, not from a journey.
    for screen_id in sorted(set(screens) - reached - {s.id for s in SYSTEM.screens}):
        problems.append(f"screen {screen_id} cannot be reached from any journey's start")
    if problems:
        raise JourneyError("journeys are not valid:\n  " + "\n  ".join(problems))
    return JourneySet(tuple(every), MappingProxyType(screens), registration, homes,
                      MappingProxyType(dict(actions)), MappingProxyType(dict(validators)), conditions, catalogs)


def _screen_problems(screen: Screen, screens: Mapping[str, Screen], catalogs: Catalogs,
                     actions: Mapping[str, ActionSpec], validators: Mapping[str, Validator],
                     conditions: Mapping[str, Condition]) -> list[str]:
    problems = []
    where = f"screen {screen.id}"
    if not isinstance(screen, Action) and not catalogs.has(screen.text):
        problems.append(f"{where}: catalog key {screen.text!r} is missing")
    for target in targets(screen):
        if target not in screens and target not in ENGINE_TARGETS:
            problems.append(f"{where}: leads to unknown screen {target!r}")
    if isinstance(screen, Menu):
        if not screen.options:
            problems.append(f"{where}: a menu needs options")
        for option in screen.options:
            if not catalogs.has(option.label):
                problems.append(f"{where}: catalog key {option.label!r} (option) is missing")
            if option.when is not None and option.when not in conditions:
                problems.append(f"{where}: unknown condition {option.when!r}")
    if isinstance(screen, Input):
        if not screen.field:
            problems.append(f"{where}: an input needs a field")
        if screen.validator not in validators:
            problems.append(f"{where}: unknown validator {screen.validator!r}")
    if (isinstance(screen, Input) and screen.secret) or isinstance(screen, Confirm):
        if not isinstance(screens.get(_target(screen)), Action):
            problems.append(f"{where}: a PIN must go straight to an action (it is never stored), "
                            f"not to {_target(screen)!r}")
    if isinstance(screen, Action):
        spec = actions.get(screen.run)
        if spec is None:
            problems.append(f"{where}: unknown action {screen.run!r}")
        else:
            mapped = {outcome for outcome, _ in screen.outcomes}
            for outcome in sorted(spec.outcomes - mapped):
                problems.append(f"{where}: outcome {outcome!r} of {screen.run} leads nowhere")
            for outcome in sorted(mapped - spec.outcomes):
                problems.append(f"{where}: {screen.run} never gives outcome {outcome!r}")
    if isinstance(screen, Notice) and screen.next == RESUME:
        problems.append(f"{where}: only the resume offer may lead to {RESUME}")
    return problems


def _target(screen: Input | Confirm) -> str:
    return screen.next


def _reachable(roots: list[str], screens: Mapping[str, Screen]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in screens]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(t for t in targets(screens[current]) if t in screens and t not in seen)
    return seen


# -- drawing ------------------------------------------------------------------------------------


def _node_id(screen_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", screen_id.lstrip("@")) + ("_target" if screen_id.startswith("@") else "")


def _edges(journeys: JourneySet) -> list[tuple[str, str, str]]:
    en = journeys.catalogs
    edges = []
    for screen in journeys.screens.values():
        if isinstance(screen, Menu):
            for n, option in enumerate(screen.options, 1):
                label = f"{n} {en.text('en', option.label)}" + (f" [{option.when}]" if option.when else "")
                edges.append((screen.id, option.goto, label))
        elif isinstance(screen, Action):
            edges.extend((screen.id, goto, outcome) for outcome, goto in screen.outcomes)
        elif isinstance(screen, Confirm):
            edges += [(screen.id, screen.next, "PIN"), (screen.id, screen.cancel, "0 cancel")]
        elif isinstance(screen, Input):
            edges.append((screen.id, screen.next, screen.field))
        elif isinstance(screen, Notice):
            edges.append((screen.id, screen.next, "any key"))
    return edges


def _shape(screen: Screen | None, node: str, label: str, fmt: str) -> str:
    label = label.replace('"', "'")
    if fmt == "mermaid":
        opening, closing = {Menu: ("[", "]"), Input: ("[/", "/]"), Confirm: ("{{", "}}"), Action: ("([", "])"),
                            End: ("((", "))"), Notice: ("[[", "]]")}.get(type(screen), (">", "]"))
        return f'    {node}{opening}"{label}"{closing}'
    shape = {Menu: "box", Input: "parallelogram", Confirm: "hexagon", Action: "ellipse", End: "doublecircle",
             Notice: "note"}.get(type(screen), "plaintext")
    return f'  {node} [label="{label}", shape={shape}];'


def draw(journeys: JourneySet, fmt: str = "mermaid") -> str:
    """The journeys as a Mermaid flowchart or a Graphviz digraph (screens as nodes, shaped by kind;
    menu choices, action outcomes and inputs as edges)."""
    if fmt not in ("mermaid", "dot"):
        raise ValueError("format is mermaid or dot")
    lines = ["flowchart TD"] if fmt == "mermaid" else ["digraph journeys {", "  rankdir=TB;"]
    special = {HOME: "main menu", BACK: "previous screen", RESUME: "resumed screen"}
    for journey in journeys.journeys:
        if fmt == "mermaid":
            lines.append(f"  subgraph {journey.name}")
        else:
            lines.append(f'  subgraph cluster_{journey.name} {{ label="{journey.name}";')
        for screen in journey.screens:
            lines.append(_shape(screen, _node_id(screen.id), screen.id, fmt))
        lines.append("  end" if fmt == "mermaid" else "  }")
    for target, label in special.items():
        lines.append(_shape(None, _node_id(target), label, fmt))
    for source, target, label in _edges(journeys):
        label = label.replace('"', "'").replace("|", "/")
        if fmt == "mermaid":
            lines.append(f'  {_node_id(source)} -->|"{label}"| {_node_id(target)}')
        else:
            lines.append(f'  {_node_id(source)} -> {_node_id(target)} [label="{label}"];')
    if fmt == "dot":
        lines.append("}")
    return "\n".join(lines) + "\n"
