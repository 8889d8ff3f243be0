"""GPU SKU canonicalisation across label dialects, and what a requested device is worth."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kubetally.sources.kubernetes.sku import (
    GpuSharing,
    gpu_share,
    gpu_sharing,
    identify_gpu,
    mig_fraction,
    parse_model,
    physical_gpus,
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
