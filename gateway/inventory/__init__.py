"""Inventory, device profiles, credentials by reference, and log redaction.

* :class:`Inventory` — devices and their protocol endpoints, from YAML (``agw lab inventory``).
* :class:`ProfileStore` — ``device_profiles/<platform>.yaml`` as :class:`drivers.base.DeviceProfile`.
* :class:`CredentialResolver` — ``file:`` / ``env:`` references → :class:`gateway.secrets.Credential`.
* :func:`select_endpoint` — which endpoint of a device serves a service.
* :class:`RedactingFilter`, :func:`install_redaction` — mask every resolved secret in logs.
"""

from gateway.inventory.credentials import CredentialResolver
from gateway.inventory.devices import Device, EndpointSpec, Inventory, select_endpoint
from gateway.inventory.profiles import RENDER_FORMATS, ProfileStore, parse_profile
from gateway.inventory.redaction import RedactingFilter, SecretsProvider, install_redaction

__all__ = [
    "RENDER_FORMATS",
    "CredentialResolver",
    "Device",
    "EndpointSpec",
    "Inventory",
    "ProfileStore",
    "RedactingFilter",
    "SecretsProvider",
    "install_redaction",
    "parse_profile",
    "select_endpoint",
]
