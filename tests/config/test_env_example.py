import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_read_from_the_environment_is_documented_in_env_example():
    source = "\n".join(p.read_text() for p in (ROOT / "src/tollgate/config").glob("*.py"))
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read - documented == set()
    assert documented - read == set()
