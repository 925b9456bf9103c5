"""Reading what ansible-inventory prints."""


def plain(value):
    """ansible-inventory (2.19+) prints strings that must not be templated as {"__ansible_unsafe": s}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


# ansible-core 2.19 imports DSA from cryptography 51+ in its ssh-agent code and Python
# prints cryptography's deprecation warning on every ansible run (docs/troubleshooting.md).
# It is ansible-core's, says nothing about the collection, and is not hidden anywhere else.
_CORE_DSA_WARNING = "ansible/_internal/_ssh/_ssh_agent.py"
_DSA_IMPORT = "from cryptography.hazmat.primitives.asymmetric.dsa import"


def collection_stderr(stderr):
    """The lines of an ansible command's stderr, without ansible-core's own DSA warning."""
    lines = []
    for line in stderr.splitlines():
        if (_CORE_DSA_WARNING in line and "CryptographyDeprecationWarning" in line) or line.strip().startswith(_DSA_IMPORT):
            continue
        lines.append(line)
    return lines
