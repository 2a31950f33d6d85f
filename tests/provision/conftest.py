from .fixtures import aws, moto_server, recorded  # noqa: F401
