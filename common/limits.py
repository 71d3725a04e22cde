"""The contract's limits that the gateway and the services both hold to."""
from common.errors import BadUserInput

MAX_PAGE = 100   # the most a page (``first``) or a list (``limit``) may ask for


def page_size(value, field="first"):
    """``value`` when it is a whole number from 1 to MAX_PAGE, else BAD_USER_INPUT on ``field``."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PAGE:
        raise BadUserInput(f"{field} must be between 1 and {MAX_PAGE}", field=field)
    return value
