"""Ray stays in its layer (DESIGN §1, §7): only the runtime, the client surface and the tools
import it. The pure modules load without Ray or pyarrow, checked in a fresh interpreter (the
test session itself has usually imported Ray already); the simulator's test runs the protocol
with Ray made unimportable."""

import ast
import os
import subprocess
import sys

import dynamo_ray

PACKAGE = os.path.dirname(dynamo_ray.__file__)
RAY_LAYERS = ("runtime", "client", "tools")  # the runtime, the client entry points, the CLI
PURE = ["core.ring", "core.versioning", "core.merkle", "core.merges", "core.codec", "core.gossip",
        "config", "errors", "storage.memtable", "sim.history", "protocol.transport"]


def _imports_ray(path: str) -> bool:
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray":
            return True
    return False


def test_only_the_runtime_client_and_tools_import_ray():
    offenders = []
    for dirpath, _, files in os.walk(PACKAGE):
        layer = os.path.relpath(dirpath, PACKAGE).split(os.sep)[0]
        for name in files:
            if name.endswith(".py") and layer not in RAY_LAYERS and _imports_ray(
                    os.path.join(dirpath, name)):
                offenders.append(os.path.relpath(os.path.join(dirpath, name), PACKAGE))
    assert not offenders, offenders
    assert _imports_ray(os.path.join(PACKAGE, "runtime", "transport.py"))  # the check can fail


def test_pure_modules_import_without_ray():
    imports = "; ".join(f"import dynamo_ray.{name}" for name in PURE)
    probe = f"import sys; {imports}; print(sorted(m for m in ('ray', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_package_still_offers_its_ray_backed_names():
    probe = "import dynamo_ray as dr; print(dr.Table.__module__, dr.start.__module__, 'Table' in dir(dr))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["dynamo_ray.client.table", "dynamo_ray.client.store", "True"], \
        out.stderr
