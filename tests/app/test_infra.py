"""The deployment matches the code: every setting the app reads is set by infra/main.bicep or
documented as optional in infra/settings.md, the template creates what the triggers and the
stores expect, and .funcignore ships the app without its tests, tools and local state.

Nothing here hard-codes the app's settings: they are collected from the code that goes into
the package (environment reads), host.json (``%NAME%``) and the functions' own binding
metadata (``connection`` names), so a setting added to the code without a place in the
template or the documentation fails this test.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP = INFRA / "main.bicep"
PARAMETERS = INFRA / "main.parameters.json"
SETTINGS_DOC = INFRA / "settings.md"

# ---- .funcignore: gitignore semantics, as much of them as the file uses -----------------------


def _glob_regex(pattern: str) -> str:
    """A gitignore glob as a regular expression over a slash-separated relative path."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape("["))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    negate: bool
    dir_only: bool
    anchored: bool
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, line: str) -> IgnoreRule | None:
        text = line.rstrip()
        if not text or text.startswith("#"):
            return None
        negate = text.startswith("!")
        if negate:
            text = text[1:]
        dir_only = text.endswith("/")
        text = text.rstrip("/")
        # A slash anywhere but at the end ties the pattern to the root; otherwise it matches
        # a name at any depth.
        anchored = "/" in text
        text = text.lstrip("/")
        return cls(text, negate, dir_only, anchored, re.compile(_glob_regex(text)))

    def matches(self, path: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        subject = path if self.anchored else path.rsplit("/", 1)[-1]
        return self.regex.fullmatch(subject) is not None


def read_rules(text: str) -> list[IgnoreRule]:
    return [rule for line in text.splitlines() if (rule := IgnoreRule.parse(line)) is not None]


def _ignored_here(rules: Iterable[IgnoreRule], path: str, is_dir: bool) -> bool:
    ignored = False
    for rule in rules:  # the last rule that matches decides
        if rule.matches(path, is_dir):
            ignored = not rule.negate
    return ignored


def is_ignored(rules: list[IgnoreRule], path: str, *, is_dir: bool = False) -> bool:
    """Whether ``path`` stays out of the package: a file inside an ignored directory is
    ignored whatever later rules say, as in git."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts)):
        if _ignored_here(rules, "/".join(parts[:depth]), True):
            return True
    return _ignored_here(rules, "/".join(parts), is_dir)


def packaged_files(root: Path, rules: list[IgnoreRule]) -> list[str]:
    """Every file of the working tree the package would hold (ignored directories are not
    entered, which also keeps .venv and node_modules out of the walk)."""
    found: list[str] = []

    def walk(directory: Path, prefix: str) -> None:
        for entry in sorted(directory.iterdir()):
            rel = f"{prefix}{entry.name}"
            if entry.name == ".git":
                continue
            if entry.is_dir() and not entry.is_symlink():
                if not _ignored_here(rules, rel, True):
                    walk(entry, rel + "/")
            elif not _ignored_here(rules, rel, False):
                found.append(rel)

    walk(root, "")
    return found


@pytest.fixture(scope="module")
def rules() -> list[IgnoreRule]:
    return read_rules((ROOT / ".funcignore").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def package(rules: list[IgnoreRule]) -> list[str]:
    return packaged_files(ROOT, rules)


def test_the_matcher_follows_gitignore_rules() -> None:
    rules = read_rules("tests\n/build\nlogs/\n*.sqlite\n!keep.sqlite\ndocs/**/*.md\n# note\n")
    assert is_ignored(rules, "tests/unit/test_x.py")
    assert is_ignored(rules, "adapters/tests/x.py")  # unanchored: a name at any depth
    assert is_ignored(rules, "build/lib.py") and not is_ignored(rules, "src/build/lib.py")
    assert is_ignored(rules, "logs", is_dir=True) and not is_ignored(rules, "logs")
    assert is_ignored(rules, "a/books.sqlite") and not is_ignored(rules, "a/keep.sqlite")
    assert is_ignored(rules, "docs/a/b/x.md") and not is_ignored(rules, "docs/x.py")
    assert not is_ignored(rules, "note")


# Development tools, tests and machine-local state, by the paths they have (or would have) in
# a working tree. Directories are probed with a file inside them.
LOCAL_PATHS = [
    "tests/unit/test_risk.py",
    "tests/integration/servers/node_modules/@vercel/cosmosdb-server/package.json",
    "devhost/host.py",
    "bench/ticks.py",
    "infra/main.bicep",
    "infra/prices.json",
    "node_modules/azurite/package.json",
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/numpy/__init__.py",
    "local.settings.json",
    "local.settings.sample.json",
    ".desk/run/books.sqlite",
    ".desk/run/session.log.json",
    ".devhost/durable.sqlite",
    ".devhost/keys.json",
    "books.sqlite",
    "books.sqlite-wal",
    ".git/HEAD",
    ".gitignore",
    ".github/workflows/ci.yml",
    ".vscode/settings.json",
    ".mypy_cache/3.11/cache.db",
    ".ruff_cache/CACHEDIR.TAG",
    ".pytest_cache/README.md",
    ".hypothesis/examples/x",
    "activities/__pycache__/trading.cpython-311.pyc",
    "__azurite_db_blob__.json",
    "__blobstorage__/x",
    ".ci/run",
    "Makefile",
    "pyproject.toml",
    "requirements-dev.txt",
    "requirements-bridge.txt",
    "adapters/feed_bridge/bridge.py",
    "README.md",
]


@pytest.mark.parametrize("path", LOCAL_PATHS)
def test_funcignore_keeps_local_and_development_files_out(
    rules: list[IgnoreRule], path: str
) -> None:
    assert is_ignored(rules, path), f"{path} would be published"


def test_no_file_of_the_development_trees_is_packaged(package: list[str]) -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    development = [
        p for p in tracked if p.split("/")[0] in {"tests", "devhost", "bench", "infra", ".ci"}
    ]
    assert development, "git ls-files found none of the development trees"
    assert not set(development) & set(package)
    assert not [p for p in package if p.endswith((".sqlite", ".pyc")) or "/node_modules/" in p]


def _local_modules(path: Path) -> Iterator[str]:
    """Repository modules a file imports, at any depth (lazy imports inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            candidate = name.replace(".", "/")
            for rel in (f"{candidate}.py", f"{candidate}/__init__.py"):
                if (ROOT / rel).is_file():
                    yield rel


def test_the_package_holds_everything_the_app_imports(package: list[str]) -> None:
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(package)
    # What the host loads at start-up ...
    probe = (
        "import sys, function_app\n"
        "for m in list(sys.modules.values()):\n"
        "    f = getattr(m, '__file__', None)\n"
        "    if f: print(f)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    local = {
        Path(f).resolve().relative_to(ROOT).as_posix()
        for f in loaded
        if Path(f).resolve().is_relative_to(ROOT) and ".venv" not in Path(f).parts
    }
    assert "triggers/ticks.py" in local
    assert local <= set(package), sorted(local - set(package))
    # ... and what it imports later, on first use (the Cosmos, Blob and Alpaca adapters).
    lazy = {
        module for path in package if path.endswith(".py") for module in _local_modules(ROOT / path)
    }
    assert "adapters/cosmos_store.py" in lazy
    assert lazy <= set(package), sorted(lazy - set(package))


# ---- the settings the app reads -------------------------------------------------------------

ENVIRON_NAMES = {"environ", "env"}
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _is_environ(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ENVIRON_NAMES
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


@dataclass
class SettingReads(ast.NodeVisitor):
    """Names of the settings a module reads from the environment.

    Reads are ``environ.get("X")``, ``environ["X"]``, ``"X" in environ``, ``os.getenv("X")``,
    and any call handed the environment with the setting's name (``_int_setting(environ,
    "X", 1)``). A name held in a module constant is resolved; a name that is a parameter of
    the enclosing function belongs to its callers (a helper); anything else cannot be
    checked and is reported as unresolved."""

    where: str
    constants: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)
    _params: list[set[str]] = field(default_factory=list)

    def scan(self, tree: ast.Module) -> None:
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                self.constants[node.targets[0].id] = node.value.value
        self.visit(tree)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        self._params.append({a.arg for a in every if a is not None})
        self.generic_visit(node)
        self._params.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def _name_of(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            self.names.add(node.value)
        elif isinstance(node, ast.Name) and node.id in self.constants:
            self.names.add(self.constants[node.id])
        elif isinstance(node, ast.Name) and any(node.id in p for p in self._params):
            return
        else:
            self.unresolved.append(f"{self.where}:{getattr(node, 'lineno', '?')}")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        reads_one = isinstance(func, ast.Attribute) and (
            (func.attr in ("get", "pop", "setdefault") and _is_environ(func.value))
            or (
                func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os"
            )
        )
        if reads_one and node.args:
            self._name_of(node.args[0])
        elif any(_is_environ(arg) for arg in node.args):
            for arg in node.args:
                if (
                    isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and SETTING_NAME.fullmatch(arg.value)
                ):
                    self.names.add(arg.value)
                    break
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _is_environ(node.value):
            self._name_of(node.slice)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if any(isinstance(op, ast.In | ast.NotIn) for op in node.ops) and any(
            _is_environ(c) for c in node.comparators
        ):
            self._name_of(node.left)
        self.generic_visit(node)


def code_settings(files: Iterable[Path]) -> tuple[set[str], list[str]]:
    names: set[str] = set()
    unresolved: list[str] = []
    for path in files:
        reads = SettingReads(where=path.name)
        reads.scan(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        names |= reads.names
        unresolved += reads.unresolved
    return names, unresolved


@dataclass(frozen=True)
class AppSettingsNeeded:
    plain: set[str]  # read by name
    connections: set[str]  # a connection string, or <name>__<property> for an identity
    identity_for_sdk: bool  # the code signs in with DefaultAzureCredential


def app_bindings() -> list[Mapping[str, Any]]:
    import function_app
    from devhost.app_index import index_app

    return [
        binding
        for spec in index_app(function_app.app).functions.values()
        for binding in (spec.trigger, *spec.bindings)
    ]


def needed_settings(package: list[str]) -> tuple[AppSettingsNeeded, list[str]]:
    sources = [ROOT / p for p in package if p.endswith(".py")]
    plain, unresolved = code_settings(sources)
    host_text = (ROOT / "host.json").read_text(encoding="utf-8")
    plain |= set(re.findall(r"%([A-Za-z0-9_]+)%", host_text))
    host = json.loads(host_text)
    storage = host.get("extensions", {}).get("durableTask", {}).get("storageProvider", {})
    connections = {"AzureWebJobsStorage", storage.get("connectionName", "AzureWebJobsStorage")}
    for binding in app_bindings():
        for key, value in binding.items():
            if key in ("connection", "connectionName", "connectionStringSetting") and value:
                connections.add(str(value))
            elif isinstance(value, str):
                plain |= set(re.findall(r"%([A-Za-z0-9_]+)%", value))
    plain.add("FUNCTIONS_WORKER_RUNTIME")  # the host's own
    signs_in = any("DefaultAzureCredential" in path.read_text(encoding="utf-8") for path in sources)
    return AppSettingsNeeded(plain - connections, connections, signs_in), unresolved


# ---- the template ---------------------------------------------------------------------------


def bicep_text() -> str:
    return BICEP.read_text(encoding="utf-8")


def bicep_block(text: str, opening: str) -> str:
    """The lines from ``opening`` to the bracket that closes its top-level block."""
    start = text.index(opening)
    # Top-level blocks close at the start of a line; nested ones are indented.
    end = min(i for i in (text.find("\n}\n", start), text.find("\n]\n", start)) if i != -1)
    return text[start : end + 2]


def template_app_settings() -> dict[str, str]:
    """``name: value`` of the template's app settings block (one setting per line)."""
    block = bicep_block(bicep_text(), "var appSettings = {")
    found: dict[str, str] = {}
    for line in block.splitlines()[1:-1]:
        match = re.fullmatch(r"  '?([A-Za-z_][A-Za-z0-9_]*)'?: (.+)", line)
        assert match, f"not one setting per line in the appSettings block: {line!r}"
        found[match.group(1)] = match.group(2)
    return found


@dataclass(frozen=True)
class BicepParam:
    name: str
    type: str
    default: str | None


def bicep_params(text: str) -> dict[str, BicepParam]:
    params: dict[str, BicepParam] = {}
    for line in text.splitlines():
        match = re.match(r"param (\w+) (\w+)(?: = (.+))?$", line)
        if match:
            params[match.group(1)] = BicepParam(match.group(1), match.group(2), match.group(3))
    return params


def documented_settings() -> dict[str, set[str]]:
    """The names in each table of infra/settings.md, by the section heading above it."""
    sections: dict[str, set[str]] = {}
    heading = ""
    for line in SETTINGS_DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = line[3:].strip().lower()
        elif line.startswith("| `") and heading:
            first_cell = line.split("|")[1]
            sections.setdefault(heading, set()).update(re.findall(r"`([^`]+)`", first_cell))
    return sections


@pytest.fixture(scope="module")
def needed(package: list[str]) -> AppSettingsNeeded:
    result, unresolved = needed_settings(package)
    assert not unresolved, (
        f"settings read under a name this test cannot see: {unresolved}; read them by a "
        "literal name (or a module constant) so the deployment can be checked"
    )
    return result


def missing_settings(
    needed: AppSettingsNeeded, template: Mapping[str, str], optional: set[str]
) -> set[str]:
    """Settings the code reads that neither the template sets nor the documentation lists
    as optional."""
    missing = {
        name
        for name in needed.plain
        if name not in template and name not in optional and name != "FUNCTIONS_WORKER_RUNTIME"
    }
    missing |= {
        name
        for name in needed.connections
        if not any(key.startswith(f"{name}__") for key in template) and name not in optional
    }
    if needed.identity_for_sdk and "AZURE_CLIENT_ID" not in template:
        missing.add("AZURE_CLIENT_ID")
    return missing


def test_the_scan_finds_the_settings_the_app_is_known_to_read(
    needed: AppSettingsNeeded,
) -> None:
    # A floor, not the list: proves the scan sees through helpers, host.json and bindings.
    assert {"TRADING_ACCOUNT", "TRADING_POLL_INTERVAL_S", "COSMOS_ENDPOINT"} <= needed.plain
    assert {"DURABLE_TASK_HUB", "AUDIT_ARCHIVE__serviceUri"} <= needed.plain
    assert {"TICKS_EVENTHUB", "TRADE_UPDATES_EVENTHUB", "AzureWebJobsStorage"} <= needed.connections
    assert needed.identity_for_sdk


def test_every_setting_the_app_reads_is_set_by_the_template_or_documented_optional(
    needed: AppSettingsNeeded,
) -> None:
    template = template_app_settings()
    docs = documented_settings()
    optional = docs.get("optional", set())
    assert missing_settings(needed, template, optional) == set()
    # The documentation lists every setting once, and only settings that exist.
    every = needed.plain | needed.connections
    assert docs.get("set by the template", set()) | optional >= every - {"AZURE_CLIENT_ID"}
    assert optional <= every, f"documented as optional but read nowhere: {optional - every}"
    assert not docs.get("set by the template", set()) & optional
    for name in docs.get("set by the template", set()) - {"FUNCTIONS_WORKER_RUNTIME"}:
        assert name in template or any(key.startswith(f"{name}__") for key in template), name


def test_a_setting_added_to_the_code_alone_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "new_feature.py"
    module.write_text(
        "import os\n"
        "PREFIX = 'ALERT_WEBHOOK_URL'\n"
        "def read(environ, name):\n"
        "    return environ.get(name)\n"
        "url = os.environ.get(PREFIX)\n"
        "level = os.getenv('ALERT_LEVEL')\n"
        "limit = _int_setting(os.environ, 'ALERT_RATE_LIMIT', 5)\n"
        "flag = 'ALERT_ON' in os.environ\n"
        "dynamic = os.environ[f'ALERT_{level}']\n"
    )
    names, unresolved = code_settings([module])
    assert names == {"ALERT_WEBHOOK_URL", "ALERT_LEVEL", "ALERT_RATE_LIMIT", "ALERT_ON"}
    assert unresolved == ["new_feature.py:9"]
    needed = AppSettingsNeeded(names, {"NEW_HUB"}, identity_for_sdk=True)
    template = {"ALERT_LEVEL": "'x'", "NEW_HUB__fullyQualifiedNamespace": "x"}
    assert missing_settings(needed, template, {"ALERT_ON"}) == {
        "ALERT_WEBHOOK_URL",
        "ALERT_RATE_LIMIT",
        "AZURE_CLIENT_ID",
    }


def test_connections_are_identity_based_with_the_user_assigned_identity(
    needed: AppSettingsNeeded,
) -> None:
    template = template_app_settings()
    for connection in needed.connections:
        assert connection not in template, f"{connection} would be a connection string"
        assert template.get(f"{connection}__credential") == "'managedidentity'", connection
        assert template.get(f"{connection}__clientId") == "clientId", connection
        service = {
            f"{connection}__{suffix}"
            for suffix in (
                "fullyQualifiedNamespace",
                "accountName",
                "serviceUri",
                "accountEndpoint",
            )
        }
        assert service & set(template), f"{connection} names no service"
    for name in needed.connections - {"AzureWebJobsStorage"}:
        assert f"{name}__fullyQualifiedNamespace" in template  # Event Hubs connections
    # The SDK clients the code builds itself (Cosmos, Blob) pick the identity by its client id.
    assert template["AZURE_CLIENT_ID"] == "clientId"
    assert "clientId}" in template["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def test_flex_consumption_settings_and_runtime() -> None:
    text = bicep_text()
    template = template_app_settings()
    # On Flex these are set by the platform or not supported; as app settings they break it.
    for name in (
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_TIME_ZONE",
        "TZ",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
    ):
        assert name not in template
    assert re.search(r"runtime: \{\s+name: 'python'\s+version: '3\.11'\s+\}", text)
    assert re.search(r"sku: \{\s+tier: 'FlexConsumption'\s+name: 'FC1'\s+\}", text)
    assert "type: 'blobContainer'" in text and "type: 'UserAssignedIdentity'" in text
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'requires-python = ">=3.11,<3.12"' in project  # the runtime the template asks for


def test_secrets_come_from_key_vault_and_no_key_is_written_down() -> None:
    text = bicep_text()
    template = template_app_settings()
    for name in ("ALPACA_KEY_ID", "ALPACA_SECRET_KEY"):
        assert template[name].startswith("'@Microsoft.KeyVault(SecretUri=${keyVault")
    assert "COSMOS_KEY" not in template and "AUDIT_ARCHIVE" not in template
    for leak in ("listKeys(", "listConnectionStrings(", "AccountKey=", "SharedAccessKey"):
        assert leak not in text
    assert text.count("allowSharedKeyAccess: false") == 2  # host storage and archive
    assert text.count("disableLocalAuth: true") == 2  # Event Hubs and Cosmos DB
    assert "DisableLocalAuth: true" in text  # Application Insights
    assert "enableRbacAuthorization: true" in text
    assert "keyVaultReferenceIdentity: identity.id" in text


# Built-in roles by id. Anything broader than the data roles the app needs is refused.
LEAST_PRIVILEGE_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f526a384-b230-433a-b45c-95f59c4a2dec": "Azure Event Hubs Data Owner",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
}


def test_role_assignments_are_least_privilege() -> None:
    text = bicep_text()
    guids = set(
        re.findall(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", text)
    )
    cosmos_contributor = "00000000-0000-0000-0000-000000000002"
    assert guids == set(LEAST_PRIVILEGE_ROLES) | {cosmos_contributor}
    assert not guids & set(BROAD_ROLES)
    # The app's identity receives on the hubs and never sends; the data-plane Cosmos role is
    # held on the desk's database, not the whole account.
    receiver = bicep_block(text, "resource hubReceiver ")
    assert (
        "roles.eventHubsDataReceiver" in receiver and "identity.properties.principalId" in receiver
    )
    sender = bicep_block(text, "resource hubSender ")
    assert "publisherPrincipalId" in sender and "identity.properties" not in sender
    cosmos = bicep_block(text, "resource cosmosAccess ")
    assert "scope: '${cosmos.id}/dbs/${cosmosDatabaseName}'" in cosmos
    assert "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@" in cosmos


def test_the_template_creates_the_hubs_and_consumer_groups_the_triggers_read() -> None:
    text = bicep_text()
    hubs = set(
        re.findall(r"name: '([a-z0-9-]+)'\n\s+partitions:", bicep_block(text, "var hubs = ["))
    )
    params = bicep_params(text)
    assert params["consumerGroup"].default is not None
    template_group = params["consumerGroup"].default.strip("'")
    overrides = json.loads(PARAMETERS.read_text(encoding="utf-8"))["parameters"]
    template_group = overrides.get("consumerGroup", {}).get("value", template_group)
    triggers = [b for b in app_bindings() if b.get("type") == "eventHubTrigger"]
    assert {t["eventHubName"] for t in triggers} == hubs
    for trigger in triggers:
        assert (trigger.get("consumerGroup") or "$Default") == template_group


def test_the_template_creates_the_cosmos_containers_the_store_uses() -> None:
    from adapters.cosmos_store import CONTAINERS, INDEXING

    spec = json.loads((INFRA / "cosmos-containers.json").read_text(encoding="utf-8"))
    assert {c["name"]: c["partitionKey"] for c in spec} == CONTAINERS
    for container in spec:
        wanted = INDEXING.get(container["name"], {}).get("compositeIndexes", [])
        assert container["compositeIndexes"] == wanted, container["name"]
    assert "loadJsonContent('cosmos-containers.json')" in bicep_text()
    assert "name: 'EnableServerless'" in bicep_text()


def test_always_ready_instances_name_real_scale_groups() -> None:
    import function_app
    from devhost.app_index import index_app

    functions = index_app(function_app.app).functions
    durable = {"orchestrationTrigger", "activityTrigger", "entityTrigger"}
    own_group = {
        f"function:{name}"
        for name, spec in functions.items()
        if spec.trigger_type not in durable | {"httpTrigger"}
    }
    parameters = json.loads(PARAMETERS.read_text(encoding="utf-8"))["parameters"]
    chosen = parameters["alwaysReady"]["value"]
    default_block = bicep_block(bicep_text(), "param alwaysReady array = [")
    defaults = re.findall(r"name: '([^']+)'\n\s+instanceCount: (\d+)", default_block)
    for groups in ([(g["name"], g["instanceCount"]) for g in chosen], defaults):
        names = {name for name, _ in groups}
        assert names <= own_group | {"http", "durable", "blob"}, names
        # The trigger path: ticks in, orchestrations out.
        assert {"function:ticks", "durable"} <= names


def test_parameters_file_matches_the_template_parameters() -> None:
    params = bicep_params(bicep_text())
    given = json.loads(PARAMETERS.read_text(encoding="utf-8"))["parameters"]
    assert set(given) <= set(params), set(given) - set(params)
    required = {name for name, p in params.items() if p.default is None}
    assert required <= set(given)
    kinds = {"string": str, "int": int, "bool": bool, "array": list, "object": dict}
    for name, entry in given.items():
        assert isinstance(entry["value"], kinds[params[name].type]), name
    assert given["instanceMemoryMB"]["value"] in (512, 2048, 4096)
    assert 40 <= given["maximumInstanceCount"]["value"] <= 1000


def _code_only(text: str) -> str:
    """The template without comments and string contents, for checking its brackets."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = len(text) if i == -1 else i
        elif text.startswith("'''", i):
            i = text.index("'''", i + 3) + 3
            out.append("''")
        elif text[i] == "'":
            j = i + 1
            while text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append("''")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def test_template_is_well_formed_as_far_as_can_be_checked_without_bicep() -> None:
    text = bicep_text()
    code = _code_only(text)
    stack: list[str] = []
    pairs = {"}": "{", "]": "[", ")": "("}
    for char in code:
        if char in "{[(":
            stack.append(char)
        elif char in pairs:
            assert stack and stack.pop() == pairs[char], "unbalanced brackets in main.bicep"
    assert not stack, "unclosed brackets in main.bicep"
    resources = re.findall(r"^resource (\w+) '([\w./]+)@([\w-]+)'", text, re.MULTILINE)
    assert len(resources) >= 20
    for symbol, kind, version in resources:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}(-preview)?", version), (symbol, version)
        assert kind.split("/")[0] in {
            "Microsoft.ManagedIdentity",
            "Microsoft.OperationalInsights",
            "Microsoft.Insights",
            "Microsoft.Storage",
            "Microsoft.Authorization",
            "Microsoft.EventHub",
            "Microsoft.DocumentDB",
            "Microsoft.KeyVault",
            "Microsoft.Web",
        }
    symbols = [symbol for symbol, _, _ in resources]
    assert len(symbols) == len(set(symbols)), "a resource symbol is declared twice"
    # Every symbol a resource refers to exists (a typo would only surface in Azure).
    declared = set(symbols) | set(bicep_params(text)) | set(re.findall(r"^var (\w+)", text, re.M))
    for referenced in re.findall(r"\b(?:parent|scope): (\w+)", code):
        assert referenced in declared, referenced
