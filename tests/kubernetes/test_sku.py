"""GPU SKU canonicalisation across label dialects, and what a requested device is worth."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kubetally.sources.kubernetes.sku import (
    GpuSharing,
    HamiDevice,
    advertised_gpus,
    gpu_share,
    gpu_sharing,
    hami_devices,
    hami_share,
    identify_gpu,
    mig_fraction,
    parse_model,
    physical_gpus,
    physical_gpus_from,
)

# Raw label values as real clusters show them (../shared/reference/realdata.md §1.2, §2).
SAME_MODEL = [
    # H100 SXM5 80GB: GFD, GKE (A3 high and mega), EKS user label, Karpenter, instance types.
    ({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, "nvidia-h100-sxm-80gb"),
    ({"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}, "nvidia-h100-sxm-80gb"),
    ({"cloud.google.com/gke-accelerator": "nvidia-h100-mega-80gb"}, "nvidia-h100-sxm-80gb"),
    ({"k8s.amazonaws.com/accelerator": "nvidia-h100"}, "nvidia-h100-sxm-80gb"),
    (
        {"karpenter.k8s.aws/instance-gpu-name": "h100", "karpenter.k8s.aws/instance-gpu-memory": "81920"},
        "nvidia-h100-sxm-80gb",
    ),
    ({"node.kubernetes.io/instance-type": "p5.48xlarge"}, "nvidia-h100-sxm-80gb"),
    ({"node.kubernetes.io/instance-type": "a3-highgpu-8g"}, "nvidia-h100-sxm-80gb"),
    ({"node.kubernetes.io/instance-type": "Standard_ND96isr_H100_v5"}, "nvidia-h100-sxm-80gb"),
    # A100 40GB SXM4: GFD (new and pre-R470 driver names), GKE, instance type.
    ({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}, "nvidia-a100-sxm-40gb"),
    ({"nvidia.com/gpu.product": "A100-SXM4-40GB"}, "nvidia-a100-sxm-40gb"),
    ({"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}, "nvidia-a100-sxm-40gb"),
    ({"node.kubernetes.io/instance-type": "p4d.24xlarge"}, "nvidia-a100-sxm-40gb"),
    # A100 80GB SXM4 vs PCIe stay apart.
    ({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, "nvidia-a100-sxm-80gb"),
    ({"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}, "nvidia-a100-sxm-80gb"),
    ({"nvidia.com/gpu.product": "NVIDIA-A100-80GB-PCIe"}, "nvidia-a100-pcie-80gb"),
    ({"nvidia.com/gpu.product": "NVIDIA-A100-PCIE-40GB"}, "nvidia-a100-pcie-40gb"),
    # H100 PCIe / NVL are other SKUs than the SXM board.
    ({"nvidia.com/gpu.product": "NVIDIA-H100-PCIe"}, "nvidia-h100-pcie-80gb"),
    ({"nvidia.com/gpu.product": "NVIDIA-H100-NVL"}, "nvidia-h100-nvl-94gb"),
    # H200, L40S, L4, T4, A10G across dialects.
    ({"nvidia.com/gpu.product": "NVIDIA-H200"}, "nvidia-h200-sxm-141gb"),
    ({"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"}, "nvidia-h200-sxm-141gb"),
    ({"nvidia.com/gpu.product": "NVIDIA-L40S"}, "nvidia-l40s-48gb"),
    ({"node.kubernetes.io/instance-type": "g6e.12xlarge"}, "nvidia-l40s-48gb"),
    ({"nvidia.com/gpu.product": "NVIDIA-L4"}, "nvidia-l4-24gb"),
    ({"cloud.google.com/gke-accelerator": "nvidia-l4"}, "nvidia-l4-24gb"),
    ({"k8s.amazonaws.com/accelerator": "L4"}, "nvidia-l4-24gb"),
    ({"nvidia.com/gpu.product": "Tesla-T4"}, "nvidia-t4-16gb"),
    ({"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, "nvidia-t4-16gb"),
    ({"k8s.amazonaws.com/accelerator": "nvidia-tesla-t4"}, "nvidia-t4-16gb"),
    ({"nvidia.com/gpu.product": "NVIDIA-A10G"}, "nvidia-a10g-24gb"),
    ({"k8s.amazonaws.com/accelerator": "NVIDIA-A10G"}, "nvidia-a10g-24gb"),
    ({"node.kubernetes.io/instance-type": "g5.2xlarge"}, "nvidia-a10g-24gb"),
    # AMD
    ({"amd.com/gpu.product-name": "AMD_Instinct_MI300X"}, "amd-mi300x-192gb"),
    ({"amd.com/gpu.product-name": "AMD Instinct MI250X / MI250"}, "amd-mi250x-128gb"),
    # AMD labeller, older beta.amd.com/* keys: product name, or only the PCI device id (+ VRAM).
    ({"beta.amd.com/gpu.product-name": "AMD_Instinct_MI210"}, "amd-mi210-64gb"),
    (
        {"beta.amd.com/gpu.device-id": "740f", "beta.amd.com/gpu.vram": "64G", "beta.amd.com/gpu.family": "AI"},
        "amd-mi210-64gb",
    ),
    ({"amd.com/gpu.device-id": "74a1"}, "amd-mi300x-192gb"),
]


@pytest.mark.parametrize(("labels", "sku"), SAME_MODEL)
def test_every_dialect_gives_the_canonical_sku(labels: dict[str, str], sku: str) -> None:
    assert identify_gpu(labels).sku == sku


def test_h100_from_gfd_gke_and_eks_is_one_sku() -> None:
    gfd = identify_gpu({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559"})
    gke = identify_gpu({"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"})
    eks = identify_gpu(
        {"k8s.amazonaws.com/accelerator": "nvidia-h100", "node.kubernetes.io/instance-type": "p5.48xlarge"}
    )
    assert gfd.sku == gke.sku == eks.sku == "nvidia-h100-sxm-80gb"
    # The raw value travels along for the record label gpu_product.
    assert (gfd.raw, gke.raw, eks.raw) == ("NVIDIA-H100-80GB-HBM3", "nvidia-h100-80gb", "nvidia-h100")


def test_sharing_suffixes_do_not_change_the_sku() -> None:
    assert identify_gpu({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"}).sku == "nvidia-h100-sxm-80gb"
    assert identify_gpu({"nvidia.com/gpu.product": "Tesla-T4-SHARED"}).sku == "nvidia-t4-16gb"


def test_a_more_precise_dialect_wins_and_an_unknown_one_falls_through() -> None:
    # GFD cannot name a brand-new board ("Graphics Device"); the GKE label still can.
    labels = {
        "nvidia.com/gpu.product": "NVIDIA-Graphics-Device",
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
    }
    assert identify_gpu(labels).sku == "nvidia-h100-sxm-80gb"


def test_unknown_model_gets_a_stable_slug_and_keeps_the_raw_value() -> None:
    identity = identify_gpu({"nvidia.com/gpu.product": "NVIDIA-RTX-9000-Blackwell-MIG-1g.12gb"})
    assert identity.sku == "nvidia-rtx-9000-blackwell"
    assert identity.raw == "NVIDIA-RTX-9000-Blackwell-MIG-1g.12gb"
    # Same board through another dialect → same slug.
    assert identify_gpu({"cloud.google.com/gke-accelerator": "nvidia-rtx-9000-blackwell"}).sku == identity.sku


def test_a_gpu_node_without_any_model_label_is_unknown() -> None:
    identity = identify_gpu({"kubernetes.io/hostname": "bare-metal-7"})
    assert (identity.sku, identity.raw) == ("unknown", "")


def test_operator_override_label_wins() -> None:
    labels = {"kubetally.io/gpu-sku": "Custom H100 Reserved", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert identify_gpu(labels, override_label="kubetally.io/gpu-sku").sku == "custom-h100-reserved"


def test_instance_type_is_the_last_resort_only() -> None:
    # A model label that parses beats the instance type.
    labels = {"node.kubernetes.io/instance-type": "p5.48xlarge", "nvidia.com/gpu.product": "NVIDIA-L40S"}
    assert identify_gpu(labels).sku == "nvidia-l40s-48gb"


def test_memory_label_picks_the_variant_when_the_name_does_not_say() -> None:
    model = parse_model("NVIDIA-A100-SXM4", memory_mib=81920)
    assert model is not None and model.sku == "nvidia-a100-sxm-80gb"


@pytest.mark.parametrize(
    ("profile", "model_raw", "fraction"),
    [
        ("1g.10gb", "NVIDIA-H100-80GB-HBM3", Fraction(1, 7)),
        ("1g.10gb", "NVIDIA-A100-SXM4-80GB", Fraction(1, 7)),
        ("2g.20gb", "NVIDIA-A100-SXM4-80GB", Fraction(2, 7)),
        ("3g.40gb", "NVIDIA-A100-SXM4-80GB", Fraction(3, 7)),
        ("7g.80gb", "NVIDIA-A100-SXM4-80GB", Fraction(1)),
        ("1g.5gb", "NVIDIA-A100-SXM4-40GB", Fraction(1, 7)),
        ("1g.10gb+me", "NVIDIA-H100-80GB-HBM3", Fraction(1, 7)),
        ("2g.12gb", "NVIDIA-A30", Fraction(2, 4)),  # the A30 has 4 compute slices
        ("1g.6gb", None, Fraction(1, 4)),  # A30 profile on a node without a model label
    ],
)
def test_mig_profile_is_its_share_of_compute_slices(profile: str, model_raw: str | None, fraction: Fraction) -> None:
    model = parse_model(model_raw) if model_raw else None
    assert mig_fraction(profile, model) == fraction


def test_requested_devices_in_physical_gpus() -> None:
    h100 = parse_model("NVIDIA-H100-80GB-HBM3")
    # MIG mixed strategy: nvidia.com/mig-1g.10gb: 1 → 1/7 GPU, profile kept.
    share, problem = gpu_share("nvidia.com/mig-1g.10gb", Fraction(1), h100, GpuSharing())
    assert (share.gpus, share.profile, problem) == (Fraction(1, 7), "1g.10gb", "")
    # MIG single strategy: nvidia.com/gpu: 2 on a node whose product says -MIG-3g.40gb → 6/7.
    single = gpu_sharing({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb"})
    share, _ = gpu_share("nvidia.com/gpu", Fraction(2), h100, single)
    assert (share.gpus, share.profile) == (Fraction(6, 7), "3g.40gb")
    # Time-slicing with 4 replicas: nvidia.com/gpu: 1 → 1/4 GPU.
    sliced = gpu_sharing({"nvidia.com/gpu.product": "Tesla-T4-SHARED", "nvidia.com/gpu.replicas": "4"})
    share, _ = gpu_share("nvidia.com/gpu", Fraction(1), parse_model("Tesla-T4"), sliced)
    assert (share.gpus, share.profile) == (Fraction(1, 4), "shared-4")
    # Renamed shared resource (renameByDefault) and GKE time-sharing.
    share, _ = gpu_share("nvidia.com/gpu.shared", Fraction(2), None, GpuSharing(replicas=4))
    assert share.gpus == Fraction(1, 2)
    gke = gpu_sharing({"cloud.google.com/gke-max-shared-clients-per-gpu": "3"})
    assert gpu_share("nvidia.com/gpu", Fraction(1), None, gke)[0].gpus == Fraction(1, 3)
    # A -SHARED product without a replicas label: replicas from capacity / physical count.
    derived = gpu_sharing(
        {"nvidia.com/gpu.product": "Tesla-T4-SHARED", "nvidia.com/gpu.count": "4"}, {"nvidia.com/gpu": "16"}
    )
    assert derived.replicas == 4
    # Whole GPUs stay whole; AMD counts as is.
    assert gpu_share("nvidia.com/gpu", Fraction(8), h100, GpuSharing())[0].gpus == Fraction(8)
    assert gpu_share("amd.com/gpu", Fraction(2), None, GpuSharing())[0].gpus == Fraction(2)


def test_unreadable_mig_profile_is_billed_whole_and_reported() -> None:
    share, problem = gpu_share("nvidia.com/mig-weird", Fraction(1), None, GpuSharing())
    assert share.gpus == Fraction(1)
    assert "weird" in problem


def test_physical_gpus_of_a_dedicated_node() -> None:
    a100 = parse_model("NVIDIA-A100-SXM4-80GB")
    # 8 GPUs, MIG single 1g.10gb: capacity advertises 56 slices → 8 GPUs.
    single = gpu_sharing({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb"})
    assert physical_gpus({}, {"nvidia.com/gpu": "56"}, a100, single) == 8
    # MIG mixed all-balanced on 8 GPUs: 16×1g + 8×2g + 8×3g = 16/7+16/7+24/7 = 8; gpu.count says 8.
    capacity = {"nvidia.com/mig-1g.10gb": "16", "nvidia.com/mig-2g.20gb": "8", "nvidia.com/mig-3g.40gb": "8"}
    assert physical_gpus({"nvidia.com/gpu.count": "8"}, capacity, a100, GpuSharing()) == 8
    assert physical_gpus({}, capacity, a100, GpuSharing()) == 8
    # Time-sliced 4×T4 × 4 replicas advertises 16.
    assert physical_gpus({}, {"nvidia.com/gpu": "16"}, None, GpuSharing(replicas=4)) == 4
    assert physical_gpus({}, {"nvidia.com/gpu": "8"}, None, GpuSharing()) == 8
    assert physical_gpus({}, {"cpu": "8"}, None, GpuSharing()) == 0


def test_time_sliced_mig_slices_are_fractions_of_the_slice() -> None:
    a100 = parse_model("NVIDIA-A100-SXM4-80GB")
    labels = {"nvidia.com/mig.strategy": "mixed", "nvidia.com/mig-1g.10gb.replicas": "2"}
    sharing = gpu_sharing(labels)
    assert sharing.mig_replicas == (("1g.10gb", 2),)
    # 1g.10gb = 1/7 of the GPU, shared 2 ways → 1/14; other profiles are not time-sliced.
    assert gpu_share("nvidia.com/mig-1g.10gb", Fraction(1), a100, sharing)[0].gpus == Fraction(1, 14)
    assert gpu_share("nvidia.com/mig-3g.40gb", Fraction(1), a100, sharing)[0].gpus == Fraction(3, 7)
    # A dedicated node advertising 14 replicas of 7 slices holds 1 GPU, not 2.
    assert physical_gpus({}, {"nvidia.com/mig-1g.10gb": "14"}, a100, sharing) == 1
    # MIG single strategy time-sliced (gpu.replicas 2): nvidia.com/gpu 1 is 1/7 / 2.
    single = gpu_sharing(
        {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb", "nvidia.com/gpu.replicas": "2"}
    )
    assert gpu_share("nvidia.com/gpu", Fraction(1), a100, single)[0].gpus == Fraction(1, 14)
    assert physical_gpus({}, {"nvidia.com/gpu": "112"}, a100, single) == 8  # 8 GPUs × 7 slices × 2


CSV = "GPU-a,10,81920,100,NVIDIA-NVIDIA A100-SXM4-80GB,0,true:GPU-b,10,81920,100,NVIDIA-NVIDIA A100-SXM4-80GB,0,true:"
JSON = '[{"id":"GPU-a","count":4,"devmem":24576,"devcore":100,"type":"NVIDIA-NVIDIA L4","health":true}]'


def test_hami_device_register_in_both_forms() -> None:
    device = HamiDevice(10, 81920, 100, "NVIDIA-NVIDIA A100-SXM4-80GB")
    assert hami_devices({"hami.io/node-nvidia-register": CSV}) == [device, device]
    assert hami_devices({"hami.io/node-nvidia-register": JSON}) == [HamiDevice(4, 24576, 100, "NVIDIA-NVIDIA L4")]
    assert hami_devices({}) is None
    assert hami_devices({"hami.io/node-nvidia-register": "[{not json"}) is None


def test_physical_gpus_of_a_hami_node_and_where_the_count_came_from() -> None:
    capacity = {"nvidia.com/gpu": "20"}  # 2 GPUs × 10 vGPU splits
    register = {"hami.io/node-nvidia-register": CSV}
    assert advertised_gpus(capacity) == 20
    assert physical_gpus_from({}, capacity, None, GpuSharing(), annotations=register) == (
        2,
        "annotation hami.io/node-nvidia-register",
    )
    # GFD's count wins over HAMi's register; the operator's label wins over both.
    gfd = {"nvidia.com/gpu.count": "2"}
    assert (
        physical_gpus_from(gfd, capacity, None, GpuSharing(), annotations=register)[1] == "label nvidia.com/gpu.count"
    )
    operator = {"kubetally.io/gpu-count": "3", **gfd}
    assert physical_gpus_from(
        operator, capacity, None, GpuSharing(), annotations=register, count_label="kubetally.io/gpu-count"
    ) == (3, "label kubetally.io/gpu-count")
    # Nothing says otherwise: the capacity, as advertised.
    assert physical_gpus_from({}, capacity, None, GpuSharing()) == (20, "capacity")


@pytest.mark.parametrize(
    ("requests", "memory_mib", "share"),
    [
        ({"nvidia.com/gpucores": Fraction(30)}, None, Fraction(3, 10)),  # cores first
        ({"nvidia.com/gpucores": Fraction(30), "nvidia.com/gpumem": Fraction(40960)}, 81920, Fraction(3, 10)),
        ({"nvidia.com/gpumem-percentage": Fraction(25)}, None, Fraction(1, 4)),
        ({"nvidia.com/gpumem": Fraction(20480)}, 81920, Fraction(1, 4)),  # 20 GiB of 80 GiB
        ({"nvidia.com/gpucores": Fraction(150)}, None, Fraction(1)),  # never more than the GPU
        ({}, 81920, None),  # neither: a whole GPU
    ],
)
def test_hami_vgpu_share_rule(requests: dict[str, Fraction], memory_mib: int | None, share: Fraction | None) -> None:
    assert hami_share(requests, memory_mib)[0] == share


def test_hami_memory_share_without_known_memory_is_reported() -> None:
    share, _, problem = hami_share({"nvidia.com/gpumem": Fraction(8000)}, None)
    assert share is None and "memory is unknown" in problem
