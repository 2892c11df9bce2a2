"""`import lossdoctor` and `import lossdoctor.integrations` must not import any training framework."""
import subprocess
import sys

FRAMEWORKS = ("lightning", "pytorch_lightning", "transformers", "keras", "tensorflow", "jax", "accelerate")


def test_importing_lossdoctor_and_its_integrations_package_imports_no_framework():
    code = (
        "import sys, lossdoctor, lossdoctor.integrations\n"
        "lossdoctor.Report, lossdoctor.Curves\n"
        f"print(','.join(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", f"frameworks imported by `import lossdoctor`: {out.stdout.strip()}"


def test_each_integration_imports_only_its_own_framework():
    code = (
        "import sys, lossdoctor.integrations.huggingface\n"
        f"print(','.join(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    imported = set(out.stdout.strip().split(","))
    assert "transformers" in imported
    assert not imported & {"lightning", "pytorch_lightning", "keras"}
