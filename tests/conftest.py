"""Shared pytest fixtures for the integration suites.

CTest runs every tests/test_*.py file as its own pytest process, so the session-scoped
`rabbit` and `mongo` fixtures start one RabbitMQ node and one FerretDB per test file.
Each test gets its own MongoDB database names and its own AMQP exchange (see `ns`), so
tests never see each other's data or events.

Standard environment given to a service by `service_factory` (the C services read it):
    HTTP_HOST=127.0.0.1  HTTP_PORT=<free port>
    MONGODB_URI=<FerretDB uri>  MONGODB_DATABASE=<name>_<ns>
    AMQP_URL=<RabbitMQ url>     AMQP_EXCHANGE=voter.events.<ns>  AMQP_QUEUE_PREFIX=<ns>.
    LOG_LEVEL=info
    GATEWAY_PROOF_SECRET=<harness.PROOF_SECRET, generated per pytest process>

Admin operations (drops, replays, simulation, DELETE of a vote, job cancellation) sent
straight to a service need the gateway's proof: harness.admin_request(method, url, ...)
(imported as `admin` by the suites) signs them as the gateway would for an admin caller.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import wait_until  # noqa: E402,F401  (re-exported for the suites)

# context path and readiness path of every service
SERVICES = {
    "election": "/election/ready",
    "candidate": "/candidate/ready",
    "voter": "/voter/ready",
    "jobs": "/jobs/ready",
    "gateway": "/gateway/health",
}


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Attach the log tail of every service the test started to a failing report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("call", "setup", "teardown"):
        for svc in getattr(item, "_voter_services", []):
            rep.sections.append((f"service {svc.name} log ({svc.log_path})", svc.log_tail(60)))


@pytest.fixture(scope="session")
def run_dir(request):
    """Temporary directory for this pytest process; removed when every test passed."""
    path = harness.make_run_dir("voter-pytest-")
    yield path
    if request.session.testsfailed == 0:
        harness.remove_run_dir(path)
    else:
        sys.stderr.write(f"\nvoter tests: run directory kept for inspection: {path}\n")


@pytest.fixture(scope="session")
def rabbit(run_dir):
    """A private RabbitMQ node (harness.RabbitMQ) for this test file."""
    broker = harness.RabbitMQ(run_dir / "rabbitmq")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mongo(run_dir):
    """A private FerretDB (harness.FerretDB) for this test file."""
    db = harness.FerretDB(run_dir / "ferretdb")
    db.start()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture
def ns():
    """Unique suffix for this test's database and exchange names."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def queue(ns):
    """The broker-side name of a service queue in this test: queue("voter.replicas.dlq")."""
    return lambda name: f"{ns}.{name}"


@pytest.fixture
def amqp_exchange(ns):
    """The AMQP exchange every service started by this test publishes to."""
    return f"voter.events.{ns}"


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    """harness.wait_until as a fixture (also importable: `from conftest import wait_until`)."""
    return harness.wait_until


@pytest.fixture
def service_factory(request, rabbit, mongo, ns, amqp_exchange, run_dir):
    """Start services with the standard environment; stop them at teardown.

        svc = service_factory("election")                      # waits for /election/ready
        svc = service_factory("candidate", env={"X": "1"})     # extra/overriding variables
        svc = service_factory("election", wait=False)          # just start it
        svc = service_factory("election", env={"GATEWAY_PROOF_SECRET": None})  # unset one

    Several services started in one test share the exchange; each service name gets
    its own database (<name>_<ns>), so two replicas of one service share theirs.
    At teardown every service gets SIGTERM; the test fails if one needed SIGKILL,
    exited non-zero, or left an AddressSanitizer/LeakSanitizer/UBSan report in its log.
    A service the test killed on purpose (svc.kill()) is only checked for sanitizer
    reports."""
    started: list[harness.Service] = []
    request.node._voter_services = started
    log_dir = run_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    test_id = "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]

    def start(name: str, env: dict | None = None, ready_path: str | None = None,
              binary=None, database: str | None = None, wait: bool = True,
              timeout: float = 30) -> harness.Service:
        port = harness.free_port()
        full_env = {
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "MONGODB_URI": mongo.uri,
            "MONGODB_DATABASE": database or f"{name}_{ns}",
            "AMQP_URL": rabbit.url,
            "AMQP_EXCHANGE": amqp_exchange,
            "AMQP_QUEUE_PREFIX": f"{ns}.",
            "LOG_LEVEL": "info",
            "GATEWAY_PROOF_SECRET": harness.PROOF_SECRET,
        }
        for key, value in (env or {}).items():  # None removes a standard variable
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        index = sum(1 for s in started if s.name == name)
        svc = harness.Service(
            name,
            binary or harness.binary(name),
            full_env,
            ready_path or SERVICES.get(name, f"/{name}/ready"),
            log_dir / f"{test_id}-{name}-{index}.log",
        )
        started.append(svc)
        svc.start()
        if wait:
            svc.wait_ready(timeout)
        return svc

    yield start

    problems = []
    for svc in reversed(started):
        was_running = svc.running
        try:
            code = svc.stop()
        except harness.HarnessError as exc:
            problems.append(str(exc))
            code = None
        if was_running and code not in (0, None):
            problems.append(f"service {svc.name} exited with {code} after SIGTERM (log: {svc.log_path})")
        report = svc.sanitizer_report()
        if report:
            problems.append(f"sanitizer report in {svc.name} log {svc.log_path}:\n{report}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
