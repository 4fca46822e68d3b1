"""Links of a scenario: explicit ones checked and expanded, default ones added.

A link joins an output to an input of another federate. It must agree in type
(`gridsim.messages.compatible`) and in meaning (`gridsim.components.meanings_agree`): a
``PowersReal`` of node injections does not feed an input of line flows, nor the feeder's
true voltages an estimator's meter input, although the message classes match. Checking the
meaning turns such a mix-up from a failure at step 0 into one line before the run.

An input left unlinked gets a default link when exactly one output elsewhere has its type
and its meaning (an input that ``combine``s links gets every such output); when several
could feed a required one, the scenario must choose. Defaults never cross meanings, so a
full stack needs links only where there is a real choice (the recorder's, and between two
producers of the same meaning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridsim.components import InputPort, OutputPort, meanings_agree, same_meaning
from gridsim.errors import InputError
from gridsim.messages import ANY_TYPE, UNTYPED, compatible, is_known_type
from gridsim.scenario import Link

if TYPE_CHECKING:
    from gridsim.wiring import FederateInstance


def expand_links(where: str, links: list[Link],
                 instances: dict[str, FederateInstance]) -> list[Link]:
    """Check explicit links; expand ``source.*`` to every output that may feed the input.

    A link written twice is kept once; two different links into an input that takes one
    are an error naming the second.
    """
    result: dict[Link, int] = {}
    for i, link in enumerate(links):
        for expanded in check_link(where, f"links[{i}]", link, instances):
            result.setdefault(expanded, i)
    fed_by: dict[tuple[str, str], Link] = {}
    for link, i in result.items():
        first = fed_by.setdefault((link.target, link.target_port), link)
        port = instances[link.target].definition.input(link.target_port)
        if first != link and not port.takes_several:
            raise InputError(where, f"links[{i}].target_port",
                             f"{link.target}.{link.target_port} takes one link and is already "
                             f"fed by {first.source}.{first.source_port}")
    return list(result)


def feeds(output: OutputPort, input_: InputPort) -> bool:
    """Whether `output` may feed `input_` through an explicit link: type and meaning."""
    return compatible(output.type, input_.type) and meanings_agree(output, input_)


def check_link(where: str, field_: str, link: Link,
               instances: dict[str, FederateInstance]) -> list[Link]:
    """The link itself, or its expansion for ``source.*``, after checking ports, types and
    meanings."""
    for role in ("source", "target"):
        if getattr(link, role) not in instances:
            raise InputError(where, f"{field_}.{role}",
                             f"no federate named {getattr(link, role)!r}")
    source, target = instances[link.source], instances[link.target]
    port_in = target.definition.input(link.target_port)
    if port_in is None:
        raise InputError(where, f"{field_}.target_port",
                         f"{link.target} ({target.type}) has no input {link.target_port!r}")
    if link.source_port == "*":
        return [link.model_copy(update={"source_port": p.port_id})
                for p in source.definition.dynamic_outputs if feeds(p, port_in)]
    port_out = source.definition.output(link.source_port)
    if port_out is None:
        raise InputError(where, f"{field_}.source_port",
                         f"{link.source} ({source.type}) has no output {link.source_port!r}")
    if not compatible(port_out.type, port_in.type):
        raise InputError(where, field_, f"{link}: output type {port_out.type} cannot feed input "
                                         f"type {port_in.type}")
    if not meanings_agree(port_out, port_in):
        raise InputError(where, field_, f"{link}: the output is {port_out.quantity}, the input "
                                         f"takes {' or '.join(port_in.meanings)} (both "
                                         f"{port_in.type}); link a {port_in.quantity} output")
    return [link]


def _defaultable(port: InputPort) -> bool:
    return not port.multiple and port.type not in (ANY_TYPE, UNTYPED) \
        and is_known_type(port.type)


def default_links(where: str, links: list[Link],
                  instances: dict[str, FederateInstance]) -> list[Link]:
    """Links for unconnected inputs that exactly one output elsewhere matches in type and
    meaning (every such output, for an input that combines its links)."""
    linked = {(link.target, link.target_port) for link in links}
    added: list[Link] = []
    for name, inst in instances.items():
        for port in inst.definition.dynamic_inputs:
            if (name, port.port_id) in linked or not _defaultable(port):
                continue
            candidates = [
                Link(source=other, source_port=out.port_id, target=name, target_port=port.port_id)
                for other, o_inst in instances.items() if other != name
                for out in o_inst.definition.dynamic_outputs
                if out.type not in (ANY_TYPE, UNTYPED) and compatible(out.type, port.type)
                and same_meaning(out, port)
            ]
            if len(candidates) == 1 or (candidates and port.combine is not None):
                added += candidates
            elif len(candidates) > 1 and port.is_required:
                names = ", ".join(f"{c.source}.{c.source_port}" for c in candidates)
                raise InputError(where, f"federates.{name}",
                                 f"input {port.port_id!r} ({_kind(port)}) could come from "
                                 f"{names}; add a link to choose")
    return added


def check_required_inputs(where: str, links: list[Link],
                          instances: dict[str, FederateInstance]) -> None:
    """Every required input is linked. The error names the outputs of its type that are
    not linked by default because of their meaning: those it takes from an explicit link,
    and those it never takes (linking one of them is the mistake to avoid)."""
    linked = {(link.target, link.target_port) for link in links}
    for name, inst in instances.items():
        for port in inst.definition.dynamic_inputs:
            if port.is_required and (name, port.port_id) not in linked:
                raise InputError(where, f"federates.{name}",
                                 f"required input {port.port_id!r} ({_kind(port)}) "
                                 f"of {inst.type} is not connected{_hint(name, port, instances)}")


def _hint(name: str, port: InputPort, instances: dict[str, FederateInstance]) -> str:
    by_hand, never = [], []
    for o_name, o_inst in instances.items():
        for out in o_inst.definition.dynamic_outputs:
            if o_name == name or port.type == ANY_TYPE or not compatible(out.type, port.type) \
                    or same_meaning(out, port):
                continue
            (by_hand if meanings_agree(out, port) else never).append(
                f"{o_name}.{out.port_id} is {out.quantity}")
    if not by_hand and not never:
        return ""
    hint = f"; no {port.quantity} output ({', '.join(by_hand + never)}"
    return hint + ("; link it by hand if that is meant)" if by_hand else ")")


def _kind(port: InputPort) -> str:
    """``Type`` or ``Type, meaning`` for messages."""
    kind = port.type or "untyped"
    return f"{kind}, {port.quantity}" if port.quantity else kind
