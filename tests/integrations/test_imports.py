"""`import lossdoctor` and `import lossdoctor.integrations` must not import any training framework."""
import subprocess
import sys

FRAMEWORKS = ("lightning", "pytorch_lightning", "transformers", "keras", "tensorflow", "jax", "accelerate",
              "optuna", "ray")


def test_importing_lossdoctor_and_its_integrations_package_imports_no_framework():
    code = (
        "import sys, lossdoctor, lossdoctor.integrations\n"
        "lossdoctor.Report, lossdoctor.Curves, lossdoctor.watch, lossdoctor.diagnose  # the public API too\n"
        f"print(','.join(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", f"frameworks imported by `import lossdoctor`: {out.stdout.strip()}"

