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
