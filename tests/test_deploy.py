"""What operators install must name exactly the settings the product reads."""

from dataclasses import fields
from pathlib import Path

from streams.settings import Settings, env_name

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_example_environment_lists_every_setting_with_its_default():
    lines = [line for line in (DEPLOY / "worker.env.example").read_text().splitlines() if "=" in line]
    example = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    defaults = Settings()
    assert set(example) == {env_name(spec.name) for spec in fields(Settings)}
    for spec in fields(Settings):
        assert example[env_name(spec.name)] == str(getattr(defaults, spec.name)).removesuffix(".0")


def test_the_readme_documents_every_environment_variable():
    text = README.read_text()
    missing = [env_name(spec.name) for spec in fields(Settings) if env_name(spec.name) not in text]
    assert missing == []


def test_the_example_environment_is_accepted():
    lines = [line for line in (DEPLOY / "worker.env.example").read_text().splitlines() if "=" in line]
    environ = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    assert Settings.from_env(environ) == Settings()
