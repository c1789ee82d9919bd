"""A conformance kit for drivers: subclass :class:`DriverConformance` and provide one fixture.

::

    from drivers.testing import ConformanceTarget, DriverConformance

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def conformance_target(self, lab) -> ConformanceTarget:
            return ConformanceTarget(driver_class=MyDriver, endpoint=..., profile=...,
                                     valid_change=..., invalid_change=..., hang=...)

See ``docs/writing-a-driver.md``.
"""

from drivers.testing.conformance import (
    ConformanceTarget,
    DriverConformance,
    reads_equal_eventually,
)

__all__ = ["ConformanceTarget", "DriverConformance", "reads_equal_eventually"]
