"""Only here to mark the wheel as platform-specific: it carries a native library
(optin_telemetry/_native/), so it must not be tagged py3-none-any. Everything
else is in pyproject.toml."""

from setuptools import setup
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(distclass=BinaryDistribution)
