"""The message types every federate exchanges: one schema, defined once.

Conventions, used everywhere in gridsim:
- Arrays are ids-aligned: ``values[i]`` belongs to ``ids[i]``. Node ids are OpenDSS node
  names in lower case, ``"<bus>.<phase>"`` (e.g. ``"150.1"``); device ids are OpenDSS element
  names without the class (e.g. ``"pv_48"``).
- Units are in the field name or in the ``units`` field: ``p_kw``, ``q_kvar``, ``v_pu``.
- Sign convention: node injections are positive *into* the network (generation > 0, a load
  gives a negative injection). Device powers (``PVStates.p_kw``, ``LoadStates.p_kw``) are
  positive in the device's own sense: PV output > 0, load consumption > 0.
- ``time_s`` is simulation time in seconds since the scenario's start.
- Names follow OEDI-SI's data types where the concept is the same (``MeasurementArray`` with
  ``ids``, ``values``, ``units``, ``accuracy``; ``VoltagesMagnitude``; ``Topology``), so their
  component definitions wire against ours.

Every message travels as JSON text in a HELICS string value. ``MESSAGE_TYPES`` maps type names
(as written in component definitions) to models; ``json_schema()`` generates the JSON Schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import models_json_schema

ANY_TYPE = "Any"
"""A port of this type accepts (or emits) every message type; the recorder uses it."""

UNTYPED = ""
"""OEDI-SI's untyped port (``"type": ""``): linkable to anything, checked by nobody."""


class Message(BaseModel):
    """Base of all messages: strict fields, finite numbers, simulation time stamp."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    time_s: float | None = Field(None, description="Simulation time of the data, s since start.")


class DeviceArrays(Message):
    """Base of messages about devices: every list field is aligned with ``ids``."""

    ids: list[str] = Field(description="Device ids: OpenDSS element names without the class.")

    @model_validator(mode="after")
    def _aligned(self) -> DeviceArrays:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name != "ids" and isinstance(value, list) and len(value) != len(self.ids):
                raise ValueError(f"{len(self.ids)} ids but {len(value)} {name}")
        return self


class MeasurementArray(Message):
    """Values aligned with ids, with units and optional one-sigma accuracy per value."""

    ids: list[str] = Field(description="Node or device ids, e.g. '150.1'.")
    values: list[float] = Field(description="One value per id, in `units`.")
    units: str = Field(description="Unit of every value: 'pu', 'V', 'deg', 'kW', 'kvar', ...")
    accuracy: list[float] | None = Field(
        None, description="One-sigma accuracy of each value, in `units`; None if exact."
    )
    pseudo: list[bool] | None = Field(
        None, description="True where a value is a pseudo-measurement (a forecast, not a "
                          "meter reading); None if none is.")

    @model_validator(mode="after")
    def _aligned(self) -> MeasurementArray:
        for name in ("values", "accuracy", "pseudo"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.ids):
                raise ValueError(f"{len(self.ids)} ids but {len(value)} {name}")
        return self


class VoltagesMagnitude(MeasurementArray):
    """Node voltage magnitudes; gridsim's feeder publishes them in 'pu' of the node base."""


class VoltagesAngle(MeasurementArray):
    """Node voltage angles, 'deg'."""


class VoltagesReal(MeasurementArray):
    """Real part of node voltages (line to ground), 'V'."""


class VoltagesImaginary(MeasurementArray):
    """Imaginary part of node voltages (line to ground), 'V'."""


class PowersReal(MeasurementArray):
    """Active power per node, 'kW', positive into the network."""


class PowersImaginary(MeasurementArray):
    """Reactive power per node, 'kvar', positive into the network."""


class AdmittanceSparse(BaseModel):
    """Sparse admittance matrix in coordinate form, entries between node ids."""

    model_config = ConfigDict(extra="forbid")

    from_equipment: list[str] = Field(description="Row node id of each entry.")
    to_equipment: list[str] = Field(description="Column node id of each entry.")
    admittance_list: list[tuple[float, float]] = Field(description="(real, imag) per entry.")
    units: Literal["S"] = "S"


class BranchAdmittance(BaseModel):
    """One line's primitive admittance, for branch-flow measurement functions.

    ``yprim`` is OpenDSS's primitive matrix of the line, row-major, (2k) x (2k) for k
    conductors per terminal: rows and columns are terminal 1's conductors (``from_nodes``)
    then terminal 2's (``to_nodes``). A conductor on ground has node id ``""``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    from_nodes: list[str]
    to_nodes: list[str]
    yprim: list[tuple[float, float]]
    units: Literal["S"] = "S"
    switch: bool | None = Field(None, description="True for a switch (OpenDSS line with "
                                                  "switch=yes), False for any other line; "
                                                  "None if the sender does not say.")


class Topology(Message):
    """The network: admittance of lines, transformers, regulators, capacitors and switches.

    Loads, PV systems and the source's Thevenin impedance are left out; the slack bus nodes
    are the reference. Republished only when the network changes (tap or capacitor moves).
    """

    ids: list[str] = Field(description="All node ids, in the matrix's order.")
    admittance: AdmittanceSparse
    base_voltage_magnitudes: VoltagesMagnitude = Field(description="Node base voltages, 'V'.")
    base_voltage_angles: VoltagesAngle = Field(description="No-load node angles, 'deg'.")
    slack_bus: list[str] = Field(description="Node ids of the substation (reference).")
    revision: int = Field(0, description="Increases by one each time the network changes.")
    branches: list[BranchAdmittance] = Field(
        [], description="Every line's primitive admittance (lines only, switches included).")
    device_nodes: list[str] = Field(
        [], description="Nodes where a load, PV system, storage or generator connects: "
                        "every other non-slack node has zero injection.")


class PVStates(DeviceArrays):
    """State of every PV system."""

    bus: list[str] = Field(description="Bus and phases of each system, e.g. '48.1.2.3'.")
    p_kw: list[float] = Field(description="Active power output, kW (> 0 generating).")
    q_kvar: list[float] = Field(description="Reactive power output, kvar (> 0 injecting).")
    available_kw: list[float] = Field(description="Output without curtailment, kW.")
    kva_rating: list[float] = Field(description="Inverter rating, kVA.")


class GeneratorStates(DeviceArrays):
    """State of every generator and storage unit (what DER telemetry reports).

    Ids are element names without the class, as everywhere; ``kind`` tells the class apart
    (a generator and a storage unit may share a name).
    """

    kind: list[Literal["generator", "storage"]] = Field(
        description="'generator' (OpenDSS Generator) or 'storage' (OpenDSS Storage).")
    bus: list[str] = Field(description="Bus and phases of each unit, e.g. 'm1026chp-3' or "
                                       "'m2001-ess1.1.2.3'.")
    p_kw: list[float] = Field(description="Active power output, kW (> 0 generating or "
                                          "discharging, < 0 charging).")
    q_kvar: list[float] = Field(description="Reactive power output, kvar (> 0 injecting).")
    kva_rating: list[float] = Field(description="Rating, kVA.")
    delta: list[bool] | None = Field(None, description="True for a unit connected line to "
                                                       "line (delta); None if not known.")


class LoadStates(DeviceArrays):
    """State of every load."""

    bus: list[str]
    p_kw: list[float] = Field(description="Consumption after caps, kW (> 0 consuming).")
    q_kvar: list[float] = Field(description="Reactive consumption, kvar.")
    demand_kw: list[float] = Field(description="What the load would draw uncapped, kW.")
    cap_kw: list[float | None] = Field(description="Active cap in kW, None if uncapped.")
    delta: list[bool] | None = Field(None, description="True for a load connected line to "
                                                       "line (delta); None if not known.")


class RegulatorStates(DeviceArrays):
    """Tap position of every regulator control."""

    transformer: list[str]
    tap: list[int] = Field(description="Tap position, steps from neutral.")
    tap_ratio: list[float] = Field(description="Winding tap in pu.")
    primary: list[str] = Field(description="Bus and phases of winding 1, e.g. '9.1'.")
    secondary: list[str] = Field(description="Bus and phases of winding 2 (the tapped one).")
    tap_step: list[float] = Field(description="Change of the winding tap per step, pu.")
    tap_limit: list[int] = Field(description="Steps either side of neutral.")


class CapacitorStates(DeviceArrays):
    """Switching state of every capacitor bank (1 closed, 0 open, for each step)."""

    states: list[list[int]]
    kvar: list[float] = Field(description="Rated kvar of each bank.")
    bus: list[str] = Field(description="Bus and phases of each bank, e.g. '88.1'.")
    kv: list[float] = Field(description="Rated voltage, kV (line to line if polyphase).")


class BranchFlows(DeviceArrays):
    """Power flowing into each line at its first terminal, per conductor.

    Ids are ``"<line>:<from node>"``, e.g. ``"l115:149.1"``.
    """

    p_kw: list[float] = Field(description="Active power into the line, kW.")
    q_kvar: list[float] = Field(description="Reactive power into the line, kvar.")


class EstimatorDiagnostics(Message):
    """How one state estimate went."""

    algorithm: str
    converged: bool
    iterations: int
    objective: float | None = Field(None, description="Weighted sum of squared residuals.")
    chi2_threshold: float | None = Field(None, description="Bad-data test threshold (95%).")
    degrees_of_freedom: int | None = None
    measurements: int = Field(0, description="Measurements used (after removals).")
    removed: list[str] = Field([], description="Measurements removed as bad data, as "
                                               "'<port>:<id>'.")
    unobservable_nodes: list[str] = Field([], description="Nodes not estimated.")
    solve_time_s: float = Field(0.0, description="Wall-clock time of the estimate, s.")
    error: str | None = Field(None, description="Why no estimate was published this step "
                                                "(a numerical failure, or 'skipped: ...' when "
                                                "inputs it needs never arrived); None if one "
                                                "was.")


class DOPFDiagnostics(Message):
    """How one DOPF solve went, and what it decided."""

    algorithm: str
    status: str = Field(description="'optimal', 'infeasible', 'failed', 'max_iterations', "
                                    "or 'skipped' (inputs missing).")
    reason: str = Field("", description="Why a solve did not give new setpoints.")
    applied: bool = Field(description="Whether new setpoints were published.")
    objective: float | None = None
    iterations: int = 0
    solve_time_s: float = Field(0.0, description="Wall-clock time of the solve, s.")
    curtailment_kw: float = Field(0.0, description="Total PV curtailment decided, kW.")
    shed_kw: float = Field(0.0, description="Total load shedding decided, kW.")
    tap_moves: int = Field(0, description="Regulator tap steps moved, all regulators.")
    capacitor_switches: int = Field(0, description="Capacitor banks switched.")
    v_max_pu: float | None = Field(None, description="Highest |V| seen before the solve.")
    v_max_predicted_pu: float | None = Field(None, description="Highest |V| the linear model "
                                                               "predicts after it.")
    unestimated_nodes: list[str] = Field([], description="Nodes the input estimate lacked: "
                                                         "linearized at no-load voltage and "
                                                         "not limited this step.")


class PVSetpoints(DeviceArrays):
    """Commands to PV inverters; None leaves a quantity as it is."""

    p_max_kw: list[float | None] = Field(
        description="Curtailment limit, kW; at or above Pmpp lifts it; None = unchanged.")
    q_kvar: list[float | None] = Field(
        description="Reactive setpoint, kvar, within the kVA rating; None = unchanged.")


class LoadCaps(DeviceArrays):
    """Upper bounds on load consumption (market rights, shedding)."""

    cap_kw: list[float | None] = Field(description="Cap in kW; None removes the cap.")


class CapacitorCommands(DeviceArrays):
    """Capacitor switching commands (overrides any capacitor control)."""

    states: list[int] = Field(description="1 closed, 0 open, applied to every step.")


class TapCommands(DeviceArrays):
    """Regulator tap commands (the regulator's automatic control is disabled)."""

    taps: list[int] = Field(description="Tap position, steps from neutral.")


class RejectedCommand(BaseModel):
    """One command the feeder could not apply."""

    model_config = ConfigDict(extra="forbid")

    port: str
    name: str
    reason: str


class CommandReport(Message):
    """What the feeder did with the commands it received for a step."""

    accepted: int
    rejected: list[RejectedCommand]


class Policy(Message):
    """The regulator's policy, read by the market and the DOPF at start and on change."""

    revision: int = Field(description="Increases by one with every change.")
    payment_rule: str = Field(description="Market payment rule by name, e.g. 'proportional'.")
    price_cap_per_kwh: float | None = Field(
        None, description="Highest interval price the market may publish, $/kWh; None: none.")
    fairness_premium: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of the buyers' gain from the market paid on "
                                         "to the entities that gave up rights.")
    v_min_pu: float = Field(description="Lowest node voltage the DOPF must keep, pu.")
    v_max_pu: float = Field(description="Highest node voltage the DOPF must keep, pu.")


class Registration(Message):
    """Market entities and their long-term Ed25519 public keys (registered with the
    regulator; the auditor attributes bids with them)."""

    entities: list[str]
    loads: list[str] = Field(description="The feeder load behind each entity.")
    public_keys: list[str] = Field(description="Raw 32-byte public keys, base64.")
    log_name: str = Field(description="Name of the market's log key (the checkpoints' origin).")
    log_public_key: str = Field(description="The log key's raw public key, base64.")


class Certificate(BaseModel):
    """Primal and dual solution of a clearing LP (docs/market.md): with the bids, enough to
    check optimality (primal and dual feasibility, zero gap) without a solver
    (`gridsim.contracts.certificate`). Entities in the clearing's order; groups and cuts in
    the order of the bids' cuts, entity after entity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kw: list[list[float]] = Field(
        description="Primal: rights received (> 0) or given up per entity and interval, kW.")
    group_value_usd: list[float] = Field(
        description="Primal: the epigraph value s_j of every group of cuts, $.")
    price_usd_per_kw: list[float] = Field(
        description="Dual of each interval's balance (p_t): $ per kW of rights over the "
                    "interval, before any price cap.")
    cut_dual: list[float] = Field(
        description="Dual of every cut (mu_k >= 0, no unit): they sum to 1 in each group.")
    upper_dual_usd_per_kw: list[list[float]] = Field(
        description="Dual of kw <= max_kw (beta+) per entity and interval, $ per kW.")
    lower_dual_usd_per_kw: list[list[float]] = Field(
        description="Dual of kw >= min_kw (beta-) per entity and interval, $ per kW.")
    objective_usd: float = Field(
        description="The primal objective, sum of s_j: the cooperation benefit by the bids, $.")


class MarketClearing(Message):
    """One market round: rights, prices, payments (``kw > 0``: the entity receives rights;
    ``payment > 0``: the entity pays)."""

    round: int
    horizon_start_s: float = Field(description="Start of the round's first interval, s.")
    interval_s: float = Field(description="Length of each interval, s.")
    entities: list[str]
    bounds_kw: list[list[float]] = Field(description="Default allocation per entity and "
                                                     "interval, kW.")
    kw: list[list[float]] = Field(description="Rights received (> 0) or given up, kW.")
    prices_per_kwh: list[float] = Field(description="Price of each interval, $/kWh.")
    payment_rule: str
    payments: list[float] = Field(description="Payment of each entity, $ (> 0 pays).")
    values: list[float] = Field(description="Each entity's value after clearing, $.")
    standalone_values: list[float] = Field(description="Each entity's value at its default "
                                                       "allocation, $.")
    full_values: list[float] = Field(description="Each entity's value with full supply, $.")
    certificate: Certificate
    status: str
    bid_indices: list[int] = Field(description="Log index of each entity's bid.")
    bids: list[dict] = Field(description="The ledger entries (`gridsim.ledger`) the clearing "
                                         "used, as JSON, in entity order.")


class LedgerUpdate(Message):
    """What the market appended to its signed log in one round."""

    round: int
    first_index: int = Field(description="Log index of the first entry below.")
    entries: list[dict] = Field(description="Ledger entries (`gridsim.ledger`), as JSON.")
    checkpoint: str = Field(description="Signed checkpoint note after the entries.")
    consistency_proof: list[str] = Field(description="From the previous checkpoint, base64.")


class Disclosures(Message):
    """Attestations and salts of one round's bids, for the auditor only: with them it can
    attribute each pseudonymous bid to an entity (`gridsim.ledger.identity.attribute`)."""

    round: int
    indices: list[int] = Field(description="Log index of each disclosed entry.")
    disclosures: list[dict] = Field(description="`gridsim.ledger.identity.Disclosure` JSON.")


class AuditFinding(BaseModel):
    """One problem the auditor found."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable code, e.g. 'bid.bad_signature' (docs/audit.md).")
    where: str = Field(description="What it concerns, e.g. 'log index 4' or 'entity s1a'.")
    detail: str


class AuditReport(Message):
    """The auditor's findings for one round or step (empty when all is well)."""

    round: int | None = Field(None, description="Market round checked; None: a step's "
                                                "metering check.")
    checks: int = Field(description="How many individual checks were made.")
    findings: list[AuditFinding]
    cosigned_checkpoint: str | None = Field(
        None, description="The market's checkpoint with the auditor's cosignature, if given.")


MESSAGE_TYPES: dict[str, type[BaseModel]] = {
    cls.__name__: cls
    for cls in (
        MeasurementArray,
        VoltagesMagnitude,
        VoltagesAngle,
        VoltagesReal,
        VoltagesImaginary,
        PowersReal,
        PowersImaginary,
        Topology,
        PVStates,
        GeneratorStates,
        LoadStates,
        RegulatorStates,
        CapacitorStates,
        BranchFlows,
        EstimatorDiagnostics,
        DOPFDiagnostics,
        PVSetpoints,
        LoadCaps,
        CapacitorCommands,
        TapCommands,
        CommandReport,
        Policy,
        Registration,
        MarketClearing,
        LedgerUpdate,
        Disclosures,
        AuditReport,
    )
}


def is_known_type(name: str) -> bool:
    """True for gridsim's message types and the two wildcards."""
    return name in MESSAGE_TYPES or name in (ANY_TYPE, UNTYPED)


def compatible(source_type: str, target_type: str) -> bool:
    """Whether an output of `source_type` may feed an input of `target_type`.

    Equal names always match; the wildcards match anything; an input of a gridsim type
    accepts any gridsim subtype (a ``MeasurementArray`` input takes ``VoltagesMagnitude``).
    Unknown foreign type names (from other projects' definitions) match only themselves.
    """
    if source_type == target_type:
        return True
    if ANY_TYPE in (source_type, target_type) or UNTYPED in (source_type, target_type):
        return True
    src, dst = MESSAGE_TYPES.get(source_type), MESSAGE_TYPES.get(target_type)
    return src is not None and dst is not None and issubclass(src, dst)


def json_schema() -> dict:
    """JSON Schema of every message type, generated from the models.

    One document: every type, and every model they nest, under ``$defs``.
    """
    _, schema = models_json_schema([(cls, "validation") for cls in MESSAGE_TYPES.values()],
                                   title="gridsim messages")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
