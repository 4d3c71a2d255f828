"""Device profiles: data, not code. One YAML file per device, checked against
`schemas/device.schema.json`; a profile may extend another and a recipe target
may override a few of its fields."""

from buildsys.devices.catalogue import BUILTIN, Catalogue, is_profile_path
from buildsys.devices.model import Device
from buildsys.devices.overrides import with_overrides
from buildsys.devices.problems import ProfileError
from buildsys.recipe.model import OVERRIDES

__all__ = ["BUILTIN", "OVERRIDES", "Catalogue", "Device", "ProfileError", "is_profile_path", "with_overrides"]
