"""The kit is not a rubber stamp: run it against deliberately broken variants of the example driver
and check that exactly the tests that should fail, fail."""

from __future__ import annotations

import os
import textwrap

import pytest

pytest.importorskip("agw_driver_example", reason="examples/driver-plugin is not installed")
pytest_plugins = ["pytester"]
pytestmark = pytest.mark.lab

BROKEN = textwrap.dedent('''
    import dataclasses
    import pytest
    from agw_driver_example import ExampleSystemDriver, load_profile
    from drivers.base import Endpoint, Timeouts
    from drivers.testing import ConformanceTarget, DriverConformance
    from gateway.errors import DeviceRejectedError
    from gateway.secrets import Credential, Secret
    from tests.conformance.test_example_plugin import interfering, invalid, valid

    class SilentRestore(ExampleSystemDriver):
        async def restore(self, snapshot, undo=None):
            return None

    class SwallowsRejection(ExampleSystemDriver):
        async def load(self, change):
            try:
                await super().load(change)
            except DeviceRejectedError:
                pass

    class LooseVerify(ExampleSystemDriver):
        """Checks only what the change names (a containment check): misses a side effect."""
        async def verify(self, change, before):
            result = await super().verify(change, before)
            named = tuple(m for m in result.mismatches if not m.unexpected)
            return dataclasses.replace(result, ok=not named, mismatches=named)

    class OverrunsTimeout(ExampleSystemDriver):
        async def _run(self, tool, args, *, timeout_s, phase):
            return await super()._run(tool, args, timeout_s=timeout_s + 3, phase=phase)

    def target(lab, cls):
        node = lab.node("snmp1")
        profile = dataclasses.replace(load_profile(), timeouts=Timeouts(connect_s=2, operation_s=1.5, commit_s=1.5))
        endpoint = Endpoint(device="snmp1", host=node.address, port=node.ports["snmp"], platform="example-snmp",
                            credential=Credential(ref="x", community=Secret(node.credentials["snmp"]["community_rw"])))
        return ConformanceTarget(driver_class=cls, endpoint=endpoint, profile=profile, valid_change=valid,
                                 invalid_change=invalid, interfering_change=interfering,
                                 hang=lambda: lab.faulted("snmp1", "stop", daemon="snmpd"))

    class TestSilentRestore(DriverConformance):
        @pytest.fixture
        def conformance_target(self, lab):
            return target(lab, SilentRestore)

    class TestSwallowsRejection(DriverConformance):
        @pytest.fixture
        def conformance_target(self, lab):
            return target(lab, SwallowsRejection)

    class TestLooseVerify(DriverConformance):
        @pytest.fixture
        def conformance_target(self, lab):
            return target(lab, LooseVerify)

    class TestOverrunsTimeout(DriverConformance):
        @pytest.fixture
        def conformance_target(self, lab):
            return target(lab, OverrunsTimeout)
''')


def test_broken_drivers_fail_the_kit(pytester: pytest.Pytester, lab: object, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_broken=BROKEN)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = session\n"
                     "asyncio_default_test_loop_scope = session\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k",
        "(SilentRestore and commit_then_restore) or (SwallowsRejection and rejected) "
        "or (OverrunsTimeout and hung and (read or load)) or (LooseVerify and unexpected)",
    )
    result.assert_outcomes(failed=5)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*FAILED*TestSilentRestore::test_commit_then_restore_gives_the_snapshot*",
        "*FAILED*TestSwallowsRejection::test_rejected_change_leaves_device_unchanged*",
        "*FAILED*TestLooseVerify::test_verify_catches_an_unexpected_difference*",
    ])
    assert out.count("FAILED test_broken.py::TestOverrunsTimeout::test_operation_on_hung_device_times_out") == 2
