"""Package layout that pyproject.toml cannot express: top-level folders mapped into `app`.

`queries/` and `migrations/` stay at the top of the repository, and the wheel carries them
as `app/_resources/queries` and `app/_resources/migrations` (found with importlib.resources,
see app/_resources/__init__.py). Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

RESOURCES = {
    "app._resources.queries": "queries",
    "app._resources.migrations": "migrations",
    "app._resources.migrations.versions": "migrations/versions",
}

setup(
    packages=find_packages(include=["app", "app.*"]) + list(RESOURCES),
    package_dir=RESOURCES,
    package_data={
        "app": ["data/*"],
        "app.report": ["*.html"],  # the explorer's page template
        "app._resources.queries": ["*.sql"],
        "app._resources.migrations": ["script.py.mako"],
    },
)
