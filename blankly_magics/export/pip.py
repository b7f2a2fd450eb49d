"""``!pip install ...`` and ``%conda install ...`` lines -> the requirement lines they name."""
from __future__ import annotations

import re
import shlex

PIP_COMMAND = re.compile(
    r"^[!%]\s*(?:\{[^}]*\}\s+|\S*python[\d.]*\s+)?(?:-m\s+)?(pip3?|conda|mamba|micromamba)\s+install\b(.*)$"
)

# Options whose value is the next word (so that word is not a package).
_TAKES_VALUE = {
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform",
    "--python-version", "--implementation", "--abi", "--trusted-host", "--src",
    "--upgrade-strategy", "--progress-bar", "--log", "--cache-dir", "-e", "--editable",
    "--channel", "-n", "--name", "-p",
}
# A file or a local folder: cannot travel in requirements.txt.
_LOCAL_ONLY = ("-r", "--requirement", "-e", "--editable")
_CONDA_PIN = re.compile(r"^([A-Za-z0-9][\w.\-]*)=([^=<>!].*)$")


def pip_requirements(command: str) -> tuple[list[str], list[str]]:
    """Requirement lines named by an install command; and what was not taken."""
    m = PIP_COMMAND.match(command.strip())
    if not m:
        return [], []
    conda = m.group(1) not in ("pip", "pip3")
    try:
        tokens = shlex.split(m.group(2), comments=True)
    except ValueError:
        tokens = m.group(2).split()
    reqs: list[str] = []
    skipped: list[str] = []
    skip_next = False
    for tok in tokens:
        if skip_next:
            skip_next = False
            if skipped and skipped[-1].startswith("-") and " " not in skipped[-1]:
                skipped[-1] += " " + tok
            continue
        if tok in ("&&", "||", ";", "|", "&") or tok.startswith((">", "2>", "1>", "<")):
            break
        if tok.startswith("-"):
            flag = tok.split("=", 1)[0]
            if flag in _LOCAL_ONLY:
                skipped.append(tok)
            if flag in _TAKES_VALUE and "=" not in tok:
                skip_next = True
            continue
        if "{" in tok or "$" in tok or tok.startswith((".", "/", "~")) or tok.endswith((".whl", ".tar.gz")):
            skipped.append(tok)  # a variable, or a local path: neither travels in requirements.txt
            continue
        reqs.append(_conda_requirement(tok) if conda else tok)
    return reqs, skipped


def _conda_requirement(tok: str) -> str:
    """conda's ``channel::pkg=1.2`` means pip's ``pkg==1.2.*``."""
    tok = tok.split("::")[-1]
    name_ver = _CONDA_PIN.match(tok)
    if name_ver:
        ver = name_ver.group(2)
        tok = f"{name_ver.group(1)}=={ver}" + ("" if ver.endswith("*") else ".*")
    return tok
