"""The pure modules import without Ray (DESIGN §7): checked in a fresh interpreter, since the
test session itself has usually imported Ray already."""

import subprocess
import sys

PURE = ["ring", "versioning", "merkle", "merges", "config", "errors", "memtable", "gossip", "testing"]


def test_pure_modules_import_without_ray():
    imports = "; ".join(f"import dynamo_ray.{name}" for name in PURE)
    probe = f"import sys; {imports}; print(sorted(m for m in ('ray', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_package_still_offers_its_ray_backed_names():
    probe = "import dynamo_ray as dr; print(dr.Table.__module__, dr.start.__module__, 'Table' in dir(dr))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["dynamo_ray.table", "dynamo_ray.client", "True"], out.stderr
