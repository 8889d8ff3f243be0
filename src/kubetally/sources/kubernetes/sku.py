"""One canonical SKU per GPU model, whatever label dialect a node speaks.

The same H100 shows up as ``NVIDIA-H100-80GB-HBM3`` (GPU Feature Discovery), ``nvidia-h100-80gb``
(GKE), a free-form ``k8s.amazonaws.com/accelerator`` value (EKS), ``h100`` (Karpenter) or only as
an instance type (``p5.48xlarge``). A price book keyed on raw strings would price one GPU several
ways (vBilling v0.1 does exactly that), so every dialect is parsed into a :class:`GpuModel` and
printed in one form: lowercase ``vendor-model[-formfactor]-memory`` (``nvidia-h100-sxm-80gb``,
``nvidia-l40s-48gb``). The form factor is only written for models sold in several (H100, H200,
A100, V100), because only there it changes the price.

A model we do not know gets a stable slug of its raw value (``NVIDIA-RTX-9000`` →
``nvidia-rtx-9000``) so it is still billed and can be priced; a GPU node with no model label at
all gets ``unknown``. The raw value always travels along in the record label ``gpu_product``.

GPU sharing is read here too, because it decides what one requested device is worth:
MIG slices count as compute slices / 7 (/ 4 on the A30), time-sliced or MPS replicas as
1 / replicas. These fractions stay :class:`~fractions.Fraction` until the meter converts hours.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from kubetally.sources.kubernetes.quantity import parse_count

UNKNOWN_SKU = "unknown"

# Label keys, in the order they are trusted (most precise first).
GFD_PRODUCT = "nvidia.com/gpu.product"
GFD_COUNT = "nvidia.com/gpu.count"
GFD_MEMORY = "nvidia.com/gpu.memory"
GFD_REPLICAS = "nvidia.com/gpu.replicas"
GFD_MIG_STRATEGY = "nvidia.com/mig.strategy"
AMD_PRODUCT = "amd.com/gpu.product-name"
#: The AMD node labeller's older label prefix (``beta.amd.com/gpu.*``), still common.
AMD_PRODUCT_BETA = "beta.amd.com/gpu.product-name"
AMD_DEVICE_ID_LABELS = ("amd.com/gpu.device-id", "beta.amd.com/gpu.device-id")
AMD_VRAM_LABELS = ("amd.com/gpu.vram", "beta.amd.com/gpu.vram")
#: HAMi's node annotation listing the physical devices it splits into vGPUs.
HAMI_REGISTER = "hami.io/node-nvidia-register"
#: HAMi's per-container vGPU share resources (requests/limits next to ``nvidia.com/gpu``).
HAMI_CORES = "nvidia.com/gpucores"
HAMI_MEMORY = "nvidia.com/gpumem"
HAMI_MEMORY_PERCENT = "nvidia.com/gpumem-percentage"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
GKE_SHARED_CLIENTS = "cloud.google.com/gke-max-shared-clients-per-gpu"
GKE_PARTITION = "cloud.google.com/gke-gpu-partition-size"
EKS_ACCELERATOR = "k8s.amazonaws.com/accelerator"
KARPENTER_GPU_NAME = "karpenter.k8s.aws/instance-gpu-name"
KARPENTER_GPU_MEMORY = "karpenter.k8s.aws/instance-gpu-memory"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
INSTANCE_TYPE_BETA = "beta.kubernetes.io/instance-type"

MODEL_LABELS = (GFD_PRODUCT, AMD_PRODUCT, AMD_PRODUCT_BETA, GKE_ACCELERATOR, EKS_ACCELERATOR, KARPENTER_GPU_NAME)

#: PCI device ids the AMD labeller writes (``gpu.device-id``) → model, for nodes labelled with
#: nothing else (Instinct generations only; a consumer card is not a cloud GPU SKU).
AMD_DEVICE_IDS = {
    "738c": "mi100",
    "740c": "mi250x",
    "740f": "mi210",
    "74a0": "mi300a",
    "74a1": "mi300x",
    "74a5": "mi325x",
}

NVIDIA_GPU = "nvidia.com/gpu"
NVIDIA_GPU_SHARED = "nvidia.com/gpu.shared"
NVIDIA_MIG_PREFIX = "nvidia.com/mig-"
AMD_GPU = "amd.com/gpu"


@dataclass(frozen=True)
class _Spec:
    vendor: str
    #: form factor → default memory (GB); ``None`` key for models sold in one form.
    forms: Mapping[str | None, int]
    #: memory variants (GB) the model exists in; a parsed memory snaps to the nearest.
    memories: tuple[int, ...]
    #: compute slices of a MIG-capable GPU (0: no MIG).
    mig_slices: int = 0


def _one(vendor: str, memory: int, mig: int = 0) -> _Spec:
    return _Spec(vendor, {None: memory}, (memory,), mig)


#: Known models. Keys are the model as tokens joined by ``-`` (``rtx-pro-6000``).
MODELS: dict[str, _Spec] = {
    "h100": _Spec("nvidia", {"sxm": 80, "pcie": 80, "nvl": 94}, (80, 94), 7),
    "h200": _Spec("nvidia", {"sxm": 141, "nvl": 141}, (141,), 7),
    "h20": _one("nvidia", 96, 7),
    "gh200": _one("nvidia", 96, 7),
    "a100": _Spec("nvidia", {"sxm": 40, "pcie": 40}, (40, 80), 7),
    "v100": _Spec("nvidia", {"sxm": 16, "pcie": 16}, (16, 32)),
    "b200": _one("nvidia", 180, 7),
    "gb200": _one("nvidia", 186, 7),
    "b300": _one("nvidia", 288, 7),
    "gb300": _one("nvidia", 288, 7),
    "a30": _one("nvidia", 24, 4),
    "a40": _one("nvidia", 48),
    "a10g": _one("nvidia", 24),
    "a10": _one("nvidia", 24),
    "a16": _one("nvidia", 16),
    "l40s": _one("nvidia", 48),
    "l40": _one("nvidia", 48),
    "l4": _one("nvidia", 24),
    "l20": _one("nvidia", 48),
    "t4": _one("nvidia", 16),
    "t4g": _one("nvidia", 16),
    "p100": _one("nvidia", 16),
    "p40": _one("nvidia", 24),
    "p4": _one("nvidia", 8),
    "k80": _one("nvidia", 12),
    "rtx-pro-6000": _one("nvidia", 96, 4),
    "rtx-6000-ada": _one("nvidia", 48),
    "rtx-a6000": _one("nvidia", 48),
    "mi355x": _one("amd", 288),
    "mi325x": _one("amd", 256),
    "mi300x": _one("amd", 192),
    "mi300a": _one("amd", 128),
    "mi250x": _one("amd", 128),
    "mi250": _one("amd", 128),
    "mi210": _one("amd", 64),
    "mi100": _one("amd", 32),
}
# Longest first, so ``rtx-pro-6000`` is tried before a shorter key could match inside it.
_MODEL_KEYS = sorted(MODELS, key=lambda k: -len(k.split("-")))
_VENDOR_TOKENS = {"nvidia", "tesla", "amd", "instinct", "geforce", "radeon"}
_FORM_TOKENS = {
    "sxm": "sxm",
    "sxm2": "sxm",
    "sxm3": "sxm",
    "sxm4": "sxm",
    "sxm5": "sxm",
    "sxm6": "sxm",
    "pcie": "pcie",
    "nvl": "nvl",
}
_MEMORY_TOKEN = re.compile(r"^(\d+)gb?$")
_MIG_PROFILE = re.compile(r"^(\d+)g\.(\d+)gb(\+me)?$")

#: Instance types whose GPU model is fixed, for nodes that carry no GPU label at all.
_INSTANCE_TYPES: tuple[tuple[re.Pattern[str], str, str | None, int], ...] = tuple(
    (re.compile(pattern), model, form, memory)
    for pattern, model, form, memory in (
        # AWS
        (r"^p5\.", "h100", "sxm", 80),
        (r"^p5en?\.", "h200", "sxm", 141),
        (r"^p4d\.", "a100", "sxm", 40),
        (r"^p4de\.", "a100", "sxm", 80),
        (r"^p3dn\.", "v100", "sxm", 32),
        (r"^p3\.", "v100", "sxm", 16),
        (r"^p6-b200\.", "b200", None, 180),
        (r"^g6e\.", "l40s", None, 48),
        (r"^g6\.", "l4", None, 24),
        (r"^g5\.", "a10g", None, 24),
        (r"^g4dn\.", "t4", None, 16),
        # Google Cloud
        (r"^a3-(high|mega|edge)gpu-", "h100", "sxm", 80),
        (r"^a3-ultragpu-", "h200", "sxm", 141),
        (r"^a2-(high|mega)gpu-", "a100", "sxm", 40),
        (r"^a2-ultragpu-", "a100", "sxm", 80),
        (r"^a4-highgpu-", "b200", None, 180),
        (r"^a4x-highgpu-", "gb200", None, 186),
        (r"^g2-standard-", "l4", None, 24),
        # Azure
        (r"^standard_nd\d+isr_h100_v5$", "h100", "sxm", 80),
        (r"^standard_nd\d+isr_h200_v5$", "h200", "sxm", 141),
        (r"^standard_nd\d+asr_v4$", "a100", "sxm", 40),
        (r"^standard_nd\d+amsr_a100_v4$", "a100", "sxm", 80),
        (r"^standard_nc\d+ads_a100_v4$", "a100", "pcie", 80),
        (r"^standard_nc\d+a?d?i?s_h100_v5$", "h100", "nvl", 94),
        (r"^standard_nc\d+as_t4_v3$", "t4", None, 16),
        (r"^standard_nv\d+ads_a10_v5$", "a10", None, 24),
    )
)


@dataclass(frozen=True)
class GpuModel:
    """A parsed GPU model; :attr:`sku` is its one canonical name."""

    vendor: str
    model: str
    form: str | None
    memory_gb: int

    @property
    def sku(self) -> str:
        parts = [
            self.vendor,
            self.model,
            self.form if len(MODELS[self.model].forms) > 1 else None,
            f"{self.memory_gb}gb",
        ]
        return "-".join(p for p in parts if p)

    @property
    def mig_slices(self) -> int:
        return MODELS[self.model].mig_slices


@dataclass(frozen=True)
class GpuIdentity:
    """What a node's labels say about its GPUs."""

    sku: str
    model: GpuModel | None
    #: The raw label value the SKU came from ("" when there was none).
    raw: str
    #: The label key it was read from ("" for none).
    source: str


def slug(value: str) -> str:
    """Stable lowercase ``[a-z0-9-]`` form of any string (used for unknown models)."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")


def strip_sharing_suffix(product: str) -> tuple[str, str | None]:
    """``NVIDIA-H100-80GB-HBM3-MIG-1g.10gb`` → (``NVIDIA-H100-80GB-HBM3``, ``1g.10gb``);
    ``Tesla-T4-SHARED`` → (``Tesla-T4``, None). GFD appends these to the product label."""
    match = re.match(r"^(.*?)-MIG-(\d+g\.\d+gb(?:\+me)?)$", product.strip(), re.IGNORECASE)
    if match:
        return match.group(1), match.group(2).lower()
    if product.upper().endswith("-SHARED"):
        return product[: -len("-SHARED")], None
    return product.strip(), None


def _nearest(memory: int, variants: tuple[int, ...]) -> int:
    return min(variants, key=lambda v: (abs(v - memory), v))


def parse_model(raw: str, *, memory_mib: int | None = None) -> GpuModel | None:
    """Parse one raw model string of any dialect; ``None`` when the model is not known.

    ``memory_mib`` (GFD ``nvidia.com/gpu.memory``, Karpenter ``instance-gpu-memory``) picks the
    memory variant when the name does not say it (``NVIDIA-A100-SXM4`` of 80 GB)."""
    base, _profile = strip_sharing_suffix(raw)
    tokens = [t for t in re.split(r"[^a-z0-9]+", base.lower()) if t]
    tokens = [t for t in tokens if t not in _VENDOR_TOKENS]
    found: tuple[int, str] | None = None
    for index in range(len(tokens)):
        for key in _MODEL_KEYS:
            key_tokens = key.split("-")
            if tokens[index : index + len(key_tokens)] == key_tokens:
                found = (index, key)
                break
        if found:
            break
    if found is None:
        return None
    index, key = found
    spec = MODELS[key]
    rest = tokens[:index] + tokens[index + len(key.split("-")) :]
    form: str | None = None
    memory: int | None = None
    for token in rest:
        if token in _FORM_TOKENS and any(f for f in spec.forms):
            form = _FORM_TOKENS[token]
        elif token == "hbm3" and key == "h100":
            form = form or "sxm"  # "H100 80GB HBM3" is the SXM5 board; the PCIe card is HBM2e
        elif (match := _MEMORY_TOKEN.match(token)) and int(match.group(1)) >= 4:
            memory = int(match.group(1))
    if None in spec.forms:
        form = None
    elif form not in spec.forms:
        form = "nvl" if memory == 94 and "nvl" in spec.forms else next(iter(spec.forms))
    if memory is None and memory_mib:
        memory = round(memory_mib / 1024)
    memory = spec.forms[form] if memory is None else _nearest(memory, spec.memories)
    return GpuModel(spec.vendor, key, form, memory)


def _instance_model(instance_type: str) -> GpuModel | None:
    value = instance_type.strip().lower()
    for pattern, model, form, memory in _INSTANCE_TYPES:
        if pattern.search(value):
            return GpuModel(MODELS[model].vendor, model, form, memory)
    return None


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    try:
        return int(str(labels.get(key, "")).strip())
    except ValueError:
        return None


def _amd_vram_mib(labels: Mapping[str, str]) -> int | None:
    """The AMD labeller's ``gpu.vram`` (``64G``) in MiB; None when absent or unreadable."""
    for key in AMD_VRAM_LABELS:
        match = re.match(r"^(\d+)\s*(G|GB|Gi|GiB)?$", str(labels.get(key) or "").strip(), re.IGNORECASE)
        if match:
            return int(match.group(1)) * 1024
    return None


def identify_gpu(labels: Mapping[str, str], *, override_label: str | None = None) -> GpuIdentity:
    """The canonical SKU of a node's GPUs from its labels (see module doc for the order)."""
    if override_label and labels.get(override_label):
        raw = labels[override_label]
        return GpuIdentity(slug(raw) or UNKNOWN_SKU, None, raw, override_label)
    first_raw: tuple[str, str] | None = None
    for key in MODEL_LABELS:
        raw = str(labels.get(key) or "").strip()
        if not raw:
            continue
        first_raw = first_raw or (raw, key)
        if key in (AMD_PRODUCT, AMD_PRODUCT_BETA):
            memory = _amd_vram_mib(labels)
        else:
            memory = _int_label(labels, GFD_MEMORY if key == GFD_PRODUCT else KARPENTER_GPU_MEMORY)
        model = parse_model(raw, memory_mib=memory if key not in (GKE_ACCELERATOR, EKS_ACCELERATOR) else None)
        if model is not None:
            return GpuIdentity(model.sku, model, raw, key)
    for key in AMD_DEVICE_ID_LABELS:
        raw = str(labels.get(key) or "").strip().lower()
        name = AMD_DEVICE_IDS.get(raw.removeprefix("0x"))
        if name is not None:
            model = parse_model(name, memory_mib=_amd_vram_mib(labels))
            if model is not None:
                return GpuIdentity(model.sku, model, str(labels[key]), key)
    for key in (INSTANCE_TYPE, INSTANCE_TYPE_BETA):
        raw = str(labels.get(key) or "").strip()
        model = _instance_model(raw) if raw else None
        if model is not None and first_raw is None:
            return GpuIdentity(model.sku, model, raw, key)
    if first_raw is not None:
        raw, key = first_raw
        base, _ = strip_sharing_suffix(raw)
        return GpuIdentity(slug(base) or UNKNOWN_SKU, None, raw, key)
    return GpuIdentity(UNKNOWN_SKU, None, "", "")


# -- sharing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSharing:
    """How a node hands out its GPUs."""

    #: Time-slicing / MPS replicas per physical GPU (1: not shared).
    replicas: int = 1
    #: MIG ``single`` strategy (or GKE partitions): every ``nvidia.com/gpu`` is this profile.
    single_profile: str | None = None
    #: MIG profiles that are themselves time-sliced (GFD ``nvidia.com/mig-<profile>.replicas``).
    mig_replicas: tuple[tuple[str, int], ...] = ()

    def replicas_of(self, profile: str) -> int:
        return dict(self.mig_replicas).get(profile.lower(), 1)


_MIG_REPLICAS_LABEL = re.compile(r"^nvidia\.com/mig-(\d+g\.\d+gb(?:\+me)?)\.replicas$", re.IGNORECASE)


def gpu_sharing(labels: Mapping[str, str], capacity: Mapping[str, str] | None = None) -> GpuSharing:
    """Read sharing from GFD (``gpu.replicas``, ``mig-<profile>.replicas``, ``-SHARED``/``-MIG-``
    product suffixes) and GKE (``gke-max-shared-clients-per-gpu``, ``gke-gpu-partition-size``)."""
    product = str(labels.get(GFD_PRODUCT) or "")
    _, profile = strip_sharing_suffix(product) if product else ("", None)
    partition = str(labels.get(GKE_PARTITION) or "").strip().lower()
    if profile is None and _MIG_PROFILE.match(partition):
        profile = partition
    replicas = _int_label(labels, GFD_REPLICAS) or 0
    if replicas <= 1:
        replicas = _int_label(labels, GKE_SHARED_CLIENTS) or 0
    if replicas <= 1 and product.upper().endswith("-SHARED") and capacity:
        # GFD renamed the product but the replicas label is missing: capacity / physical count.
        count = _int_label(labels, GFD_COUNT)
        advertised = parse_count(capacity.get(NVIDIA_GPU) or capacity.get(NVIDIA_GPU_SHARED) or "0")
        if count and advertised and advertised % count == 0:
            replicas = advertised // count
    mig_replicas = []
    for key in sorted(labels):
        match = _MIG_REPLICAS_LABEL.match(key)
        value = _int_label(labels, key) if match else None
        if match and value is not None and value > 1:
            mig_replicas.append((match.group(1).lower(), value))
    return GpuSharing(replicas=max(replicas, 1), single_profile=profile, mig_replicas=tuple(mig_replicas))


@dataclass(frozen=True)
class HamiDevice:
    """One physical GPU as HAMi registers it on its node (``hami.io/node-nvidia-register``)."""

    splits: int
    memory_mib: int
    cores: int
    type: str


def hami_devices(annotations: Mapping[str, str]) -> list[HamiDevice] | None:
    """The physical GPUs HAMi registered on a node, from either form it writes: the CSV form
    ``GPU-<uuid>,<splits>,<mem MiB>,<cores>,<type>,<numa>,<healthy>:`` (one per device, ``:``
    separated) or the JSON list of ``{id, count, devmem, devcore, type, health}``. ``None`` when
    the annotation is absent or cannot be read."""
    raw = str(annotations.get(HAMI_REGISTER) or "").strip()
    if not raw:
        return None
    devices: list[HamiDevice] = []
    try:
        if raw.startswith("["):
            for entry in json.loads(raw):
                devices.append(
                    HamiDevice(
                        int(entry.get("count") or 1),
                        int(entry.get("devmem") or 0),
                        int(entry.get("devcore") or 100),
                        str(entry.get("type") or ""),
                    )
                )
        else:
            for entry in raw.split(":"):
                fields = [f.strip() for f in entry.split(",")]
                if len(fields) < 5 or not fields[0]:
                    continue
                devices.append(HamiDevice(int(fields[1]), int(fields[2]), int(fields[3]), fields[4]))
    except (ValueError, TypeError, AttributeError):
        return None
    return devices or None


def mig_fraction(profile: str, model: GpuModel | None) -> Fraction | None:
    """A MIG profile's share of its GPU by compute slices: ``1g.10gb`` → 1/7, ``3g.40gb`` → 3/7;
    the A30 has 4 slices (``2g.12gb`` → 2/4). ``None`` when the profile cannot be parsed."""
    match = _MIG_PROFILE.match(profile.strip().lower())
    if not match:
        return None
    slices = int(match.group(1))
    total = model.mig_slices if model is not None and model.mig_slices else 7
    if model is None and match.group(2) in ("6", "12", "24") and slices in (1, 2, 4):
        total = 4  # A30 profiles (1g.6gb, 2g.12gb, 4g.24gb) when the model is unknown
    return Fraction(min(slices, total), total)


@dataclass(frozen=True)
class GpuShare:
    """A requested GPU resource turned into physical GPUs (exact fraction)."""

    gpus: Fraction
    #: ``1g.10gb`` for MIG, ``shared-4`` for 1/4 time-sliced, None for whole GPUs.
    profile: str | None
    resource: str


def is_gpu_resource(name: str) -> bool:
    return name in (NVIDIA_GPU, NVIDIA_GPU_SHARED, AMD_GPU) or name.startswith(NVIDIA_MIG_PREFIX)


def gpu_share(resource: str, count: Fraction, model: GpuModel | None, sharing: GpuSharing) -> tuple[GpuShare, str]:
    """What ``count`` devices of ``resource`` are worth in physical GPUs on a node.

    Returns the share and a problem text ("" if none) for the caller to report."""
    problem = ""
    if resource.startswith(NVIDIA_MIG_PREFIX):
        profile = resource[len(NVIDIA_MIG_PREFIX) :].lower()
        fraction = mig_fraction(profile, model)
        if fraction is None:
            return GpuShare(count, profile, resource), f"MIG profile {profile!r} not understood; billed as whole GPUs"
        # A time-sliced MIG slice: each replica holds 1/replicas of the slice.
        return GpuShare(count * fraction / sharing.replicas_of(profile), profile, resource), problem
    if resource == NVIDIA_GPU and sharing.single_profile:
        fraction = mig_fraction(sharing.single_profile, model)
        if fraction is None:
            problem = f"MIG profile {sharing.single_profile!r} not understood; billed as whole GPUs"
            fraction = Fraction(1)
        replicas = max(sharing.replicas, sharing.replicas_of(sharing.single_profile))
        return GpuShare(count * fraction / replicas, sharing.single_profile, resource), problem
    if resource == NVIDIA_GPU_SHARED or (resource == NVIDIA_GPU and sharing.replicas > 1):
        if sharing.replicas <= 1:
            return GpuShare(count, "shared", resource), (
                f"{resource} requested but the node has no {GFD_REPLICAS} label; billed as whole GPUs"
            )
        return GpuShare(count / sharing.replicas, f"shared-{sharing.replicas}", resource), problem
    return GpuShare(count, None, resource), problem


def advertised_gpus(capacity: Mapping[str, str]) -> int:
    """Every GPU device a node advertises (whole GPUs, time-sliced replicas, MIG slices, vGPU
    splits): what a naive reading would bill for a dedicated node."""
    total = 0
    for resource, value in capacity.items():
        if is_gpu_resource(resource):
            total += parse_count(value)
    return total


def physical_gpus(
    labels: Mapping[str, str],
    capacity: Mapping[str, str],
    model: GpuModel | None,
    sharing: GpuSharing,
    *,
    annotations: Mapping[str, str] | None = None,
    count_label: str | None = None,
) -> int:
    """:func:`physical_gpus_from` without the source."""
    return physical_gpus_from(labels, capacity, model, sharing, annotations=annotations, count_label=count_label)[0]


def physical_gpus_from(
    labels: Mapping[str, str],
    capacity: Mapping[str, str],
    model: GpuModel | None,
    sharing: GpuSharing,
    *,
    annotations: Mapping[str, str] | None = None,
    count_label: str | None = None,
) -> tuple[int, str]:
    """Whole GPUs in a node (a dedicated node is billed for all of them, shared or sliced), and
    where the number came from.

    In order of trust: the operator's ``count_label``; GFD's ``nvidia.com/gpu.count``; HAMi's
    device register (HAMi advertises every physical GPU as ``splits`` vGPUs: 8 A100s × 10 = 80);
    then the capacity, undoing MIG ``single`` slices (advertised as ``nvidia.com/gpu``),
    time-slicing replicas (``GPUs × replicas``) and MIG mixed slices."""
    nvidia = parse_count(capacity.get(NVIDIA_GPU) or "0")
    shared = parse_count(capacity.get(NVIDIA_GPU_SHARED) or "0")
    amd = parse_count(capacity.get(AMD_GPU) or "0")
    if count_label and _int_label(labels, count_label) is not None:
        return max(_int_label(labels, count_label) or 0, 0), f"label {count_label}"
    mig_total = Fraction(0)
    for resource, value in capacity.items():
        if resource.startswith(NVIDIA_MIG_PREFIX):
            profile = resource[len(NVIDIA_MIG_PREFIX) :]
            fraction = mig_fraction(profile, model) or Fraction(1)
            mig_total += parse_count(value) * fraction / sharing.replicas_of(profile)
    has_nvidia = bool(nvidia or shared or mig_total)
    count = _int_label(labels, GFD_COUNT)
    if has_nvidia and count is not None and count > 0:
        return count + amd, f"label {GFD_COUNT}"
    devices = hami_devices(annotations or {})
    if has_nvidia and devices is not None:
        return len(devices) + amd, f"annotation {HAMI_REGISTER}"
    if sharing.single_profile and nvidia:
        fraction = mig_fraction(sharing.single_profile, model) or Fraction(1)
        per_gpu = max(int(1 / fraction), 1) * max(sharing.replicas, sharing.replicas_of(sharing.single_profile))
        return math.ceil(Fraction(nvidia, per_gpu)) + amd, "capacity (MIG single)"
    whole = math.ceil(Fraction(nvidia + shared, sharing.replicas)) + math.ceil(mig_total)
    return whole + amd, "capacity" if sharing.replicas == 1 else f"capacity / {GFD_REPLICAS}"


def hami_share(container_requests: Mapping[str, Fraction], memory_mib: int | None) -> tuple[Fraction | None, str, str]:
    """What one HAMi vGPU of a container holds of its physical GPU, as an exact fraction.

    The rule (README, "HAMi vGPU shares"): by ``nvidia.com/gpucores`` (percent of the GPU's
    compute) when the container sets it; else by ``nvidia.com/gpumem-percentage``; else by
    ``nvidia.com/gpumem`` (MiB) over the device's memory; a vGPU with neither is a whole GPU
    (HAMi then lets it use all cores and all memory). Returns (share or None, profile, problem)."""
    cores = container_requests.get(HAMI_CORES)
    if cores:
        return min(cores / 100, Fraction(1)), f"vgpu-cores-{cores}", ""
    percent = container_requests.get(HAMI_MEMORY_PERCENT)
    if percent:
        return min(percent / 100, Fraction(1)), f"vgpu-mem-{percent}pct", ""
    memory = container_requests.get(HAMI_MEMORY)
    if memory:
        if not memory_mib:
            return None, "", f"{HAMI_MEMORY} {memory} MiB requested but the GPU memory is unknown; billed as whole GPUs"
        return min(memory / memory_mib, Fraction(1)), f"vgpu-mem-{memory}mib", ""
    return None, "", ""
