"""A Dagster webserver and daemon on 127.0.0.1 for end-to-end tests, and a tiny GraphQL client.

`dagster_servers(...)` writes a temporary DAGSTER_HOME (dagster.yaml) and a workspace.yaml
loading `rlx_assets.definitions` as location `rlx_assets`, starts `dagster-webserver` and
`dagster-daemon run` as subprocesses, each in its own process group with SIGINT at its
default (a backgrounded shell would otherwise hand them an ignored SIGINT), and waits until
the GraphQL endpoint answers with the code location loaded. On exit it sends SIGINT to each
group, waits, SIGKILLs what is left, and asserts that no process it started (found by a
marker variable in the environment, so children that left the group are caught too) is
still alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import requests

from rlx_assets_tests.stand_ins import free_port

BIN = Path(sys.executable).parent  # dagster-webserver and dagster-daemon of this venv
LOCATION = "rlx_assets"
MARKER_VARIABLE = "RLX_E2E_SERVERS_MARKER"

DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: {max_concurrent_runs}
  pools:
    default_limit: 2
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 60
"""

GRPC_WORKSPACE_YAML = """\
load_from:
  - grpc_server:
      host: 127.0.0.1
      port: {port}
      location_name: {location}
"""

WORKSPACE_YAML = """\
load_from:
  - python_module:
      module_name: rlx_assets.definitions
      location_name: {location}
      working_directory: {working_directory}
"""

LOCATION_QUERY = """
query Location {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


class GraphQLError(AssertionError):
    """The server answered with `errors`; the message holds them."""


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None,
            timeout: float = 60.0) -> dict[str, Any]:
    """POST one GraphQL operation and return its `data`; top-level `errors` raise GraphQLError."""
    response = requests.post(url, json={"query": query, "variables": dict(variables or {})},
                             timeout=timeout)
    try:
        body = response.json()
    except ValueError:
        raise GraphQLError(f"{url} answered HTTP {response.status_code} without JSON: "
                           f"{response.text[:2000]}") from None
    if body.get("errors"):
        raise GraphQLError(f"GraphQL errors from {url} (HTTP {response.status_code}): "
                           f"{body['errors']}")
    if body.get("data") is None:
        raise GraphQLError(f"{url} answered HTTP {response.status_code} with no data: {body}")
    # A resolver error the server captured comes back as HTTP 500 with a `PythonError` in
    # `data`, as the UI receives it; callers look at `__typename`.
    return body["data"]


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _restore_sigint() -> None:
    """In the child before exec: a backgrounded parent may have SIGINT ignored; undo that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def processes_with_marker(marker: str) -> list[tuple[int, str]]:
    """Live (non-zombie) processes whose environment holds `MARKER_VARIABLE=marker`."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found.append((int(entry.name), cmdline.strip()))
    return found


@dataclass
class DagsterServers:
    """Handles on the running webserver and daemon; `graphql()` talks to the webserver."""

    home: Path
    workspace: Path
    port: int
    env: dict[str, str]
    marker: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None,
                timeout: float = 60.0) -> dict[str, Any]:
        return graphql(self.url, query, variables, timeout)

    def assert_running(self, while_: str) -> None:
        """Fail, with its log, if a server process has exited while waiting for `while_`."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} while waiting for "
                                     f"{while_}.\n" + self.log_tail(name, 80))

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return f"(no {name} log)"
        text = path.read_text(errors="replace").splitlines()
        return f"--- last {lines} lines of the {name} log ({path}) ---\n" + "\n".join(
            text[-lines:])

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.home / f"{name}.log"
        self.logs[name] = log
        with open(log, "ab") as handle:
            proc = subprocess.Popen(
                argv, cwd=str(self.home), env=self.env, stdin=subprocess.DEVNULL,
                stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_restore_sigint,
            )
        self.processes[name] = proc
        return proc

    def start_webserver(self) -> None:
        self.start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1",
                                 "-p", str(self.port), "-w", str(self.workspace)])

    def start_daemon(self) -> None:
        self.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def start_code_server(self, port: int, timeout: float = 120.0) -> None:
        """`dagster code-server start` serving the location on 127.0.0.1:`port`; waits until
        it answers a gRPC health check (the code has loaded)."""
        self.start("code_server", [str(BIN / "dagster"), "code-server", "start",
                                   "-h", "127.0.0.1", "-p", str(port),
                                   "-m", "rlx_assets.definitions", "--location-name", LOCATION])
        deadline = time.monotonic() + timeout
        while True:
            proc = self.processes["code_server"]
            if proc.poll() is not None:
                raise AssertionError(f"dagster code-server exited with {proc.returncode}.\n"
                                     + self.log_tail("code_server"))
            check = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "--host", "127.0.0.1",
                 "-p", str(port)], env=self.env, capture_output=True, text=True, timeout=60)
            if check.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"The code server on port {port} did not answer within "
                                     f"{timeout:.0f} s: {check.stdout}{check.stderr}\n"
                                     + self.log_tail("code_server"))
            time.sleep(1.0)

    def stop(self, name: str, grace_seconds: float = 20.0) -> None:
        """SIGINT the process group, wait for the leader, then SIGKILL the whole group."""
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        _signal_group(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def wait_until_ready(self, timeout: float = 120.0) -> None:
        """Until the GraphQL endpoint answers and the code location has loaded."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            webserver = self.processes.get("webserver")
            if webserver is not None and webserver.poll() is not None:
                raise AssertionError(f"dagster-webserver exited with {webserver.returncode}.\n"
                                     + self.log_tail("webserver"))
            try:
                data = self.graphql(LOCATION_QUERY, timeout=10)
            except (requests.RequestException, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.5)
                continue
            entries = data["workspaceOrError"].get("locationEntries") or []
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise AssertionError(f"Code location {LOCATION} failed to load: "
                                         f"{loaded['message']}\n{loaded.get('stack')}")
                return
            last = f"location entry {entry}"
            time.sleep(0.5)
        raise AssertionError(f"The webserver at {self.url} was not ready within {timeout:.0f} s "
                             f"({last}).\n" + self.log_tail("webserver"))

    def leftovers(self, settle_seconds: float = 10.0) -> list[tuple[int, str]]:
        """Processes started here that are still alive, after `settle_seconds` at most."""
        deadline = time.monotonic() + settle_seconds
        while True:
            alive = processes_with_marker(self.marker)
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.25)

    def stop_all(self, check: bool = True) -> None:
        """Stop both groups, kill stragglers; with `check`, fail if any had to be killed."""
        for name in list(self.processes):
            self.stop(name)
        alive = self.leftovers()
        for pid, _cmd in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not check or not alive, f"Processes left behind by the Dagster servers: {alive}"


def write_instance(home: Path, max_concurrent_runs: int = 2,
                   working_directory: Path | None = None, dagster_yaml: str | None = None,
                   code_server_port: int | None = None) -> Path:
    """dagster.yaml and workspace.yaml in `home`; returns the workspace file. `dagster_yaml`
    replaces the instance config; `code_server_port` makes the workspace a `grpc_server`
    entry on 127.0.0.1 instead of loading the module in-process."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        dagster_yaml or DAGSTER_YAML.format(max_concurrent_runs=max_concurrent_runs))
    workspace = home / "workspace.yaml"
    if code_server_port is not None:
        workspace.write_text(GRPC_WORKSPACE_YAML.format(port=code_server_port,
                                                        location=LOCATION))
    else:
        workspace.write_text(WORKSPACE_YAML.format(location=LOCATION,
                                                   working_directory=working_directory or home))
    return workspace


@contextmanager
def dagster_servers(
    home: Path,
    env: Mapping[str, str],
    *,
    start_daemon: bool = True,
    max_concurrent_runs: int = 2,
    ready_timeout: float = 120.0,
    working_directory: Path | None = None,
    dagster_yaml: str | None = None,
    code_server: bool = False,
) -> Iterator[DagsterServers]:
    """Webserver (and, unless `start_daemon=False`, daemon) over a fresh DAGSTER_HOME `home`.

    `env` is added to a copy of this process's environment for the subprocesses. With
    `start_daemon=False` the caller may start it later with `servers.start_daemon()`, e.g.
    right after launching a backfill so that the daemon's first backfill tick picks it up.
    The code location's working directory defaults to `home`, so that a developer's `.env`
    in the repository does not leak into the test (the package is installed, editable).

    `dagster_yaml` replaces the instance config (e.g. deploy/postgres/dagster.yaml, with its
    DAGSTER_PG_* variables in `env`). With `code_server=True` the code location runs in its
    own process, `dagster code-server start` on a free port of 127.0.0.1 (cwd `home`), and
    the workspace is a `grpc_server` entry pointing at it, as in production.
    """
    code_port = free_port() if code_server else None
    workspace = write_instance(home, max_concurrent_runs, working_directory, dagster_yaml,
                               code_port)
    marker = uuid.uuid4().hex
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home), MARKER_VARIABLE: marker,
                "PYTHONUNBUFFERED": "1"}
    servers = DagsterServers(home=home, workspace=workspace, port=free_port(), env=full_env,
                             marker=marker)
    try:
        # Create the storages once, before two processes race to create them.
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            instance.get_runs(limit=1)
            instance.get_backfills(limit=1)
        finally:
            instance.dispose()
        if code_port is not None:
            servers.start_code_server(code_port)
        servers.start_webserver()
        if start_daemon:
            servers.start_daemon()
        servers.wait_until_ready(ready_timeout)
        yield servers
    except BaseException:
        servers.stop_all(check=False)  # do not hide the test's own failure
        raise
    servers.stop_all()


# The queries the UI sends to launch and follow a backfill (used by tests and benchmarks).
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status timestamp endTimestamp numPartitions
      error { message }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
    ... on Error { message }
  }
}
"""

TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED",
                     "CANCELED"}

RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      count
      results {
        runId status startTime endTime
        assetSelection { path }
        tags { key value }
      }
    }
    ... on Error { message }
  }
}
"""

ASSET_STATUS = """
query AssetStatus($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
      }
      assetChecksOrError {
        __typename
        ... on AssetChecks {
          checks {
            name
            blocking
            partitionStatuses {
              __typename
              ... on AssetCheckTimePartitionStatuses { ranges { status startKey endKey } }
            }
          }
        }
        ... on Error { message }
      }
    }
    ... on Error { message }
  }
}
"""

def expand_ranges(ranges: list[dict[str, str]], keys: list[str]) -> dict[str, str]:
    """Time ranges `{status, startKey, endKey}` -> {partition key: status} for `keys`."""
    return {key: r["status"] for r in ranges for key in keys
            if r["startKey"] <= key <= r["endKey"]}


def wait_for_backfill(servers: DagsterServers, backfill_id: str,
                      timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    backfill: dict[str, Any] = {}
    while time.monotonic() < deadline:
        backfill = servers.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", f"backfill lookup: {backfill}"
        if backfill["status"] in TERMINAL_BACKFILL:
            return backfill
        servers.assert_running(f"backfill {backfill_id}")
        time.sleep(1.0)
    runs = backfill_runs(servers, backfill_id)
    raise AssertionError(
        f"Backfill {backfill_id} not finished after {timeout:.0f} s: status "
        f"{backfill.get('status')}, per asset {backfill.get('assetBackfillData')}, runs "
        f"{[(r['runId'][:8], r['status']) for r in runs]}.\n" + servers.log_tail("daemon", 80))


def backfill_runs(servers: DagsterServers, backfill_id: str) -> list[dict[str, Any]]:
    data = servers.graphql(RUNS, {"filter": {"tags": [
        {"key": "dagster/backfill", "value": backfill_id}]}})["runsOrError"]
    assert data["__typename"] == "Runs", f"runsOrError: {data}"
    assert data["count"] == len(data["results"])
    return data["results"]
