"""The worker image's Dockerfile template, shipped inside the wheel as package data.

Installed as ``starburst_executor.worker_image`` (a package-dir mapping in pyproject.toml), so
``starburst build`` finds it both in a checkout and in an installed wheel.
"""
