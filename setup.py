"""Wheels carry the project's `configs/` and `sweeps/` inside the package (`mygo/configs`, `mygo/sweeps`), so that
`pip install .` (not editable) composes configs like a checkout does; everything else is in pyproject.toml.

An editable install and a checkout read them where they are, beside `mygo/` (`mygo.config.project_path`).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PROJECT_DATA = ("configs", "sweeps")


class BuildWithProjectData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name in PROJECT_DATA:
            source = Path(__file__).resolve().parent / name
            if source.is_dir():
                target = Path(self.build_lib) / "mygo" / name
                shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildWithProjectData})
