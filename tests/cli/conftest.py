from ..provision.fixtures import aws, moto_server, recorded  # noqa: F401
