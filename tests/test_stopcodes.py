import pytest

from streams import stopcodes


def test_decimal_and_hex_forms_give_the_same_code():
    assert stopcodes.from_decimal("395") == stopcodes.from_param1(
        "0x0000018b (0x0000000000000000, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)"
    )


def test_label_is_upper_case_hex_and_unknown_for_zero():
    assert stopcodes.label(395) == "0x18B"
    assert stopcodes.label(0) == "unknown"
    assert stopcodes.describe(0xEF) == "0xEF CRITICAL_PROCESS_DIED"


@pytest.mark.parametrize("text", ["", "abc", "-1", "99999999999"])
def test_bad_decimal_codes_raise(text):
    with pytest.raises(ValueError):
        stopcodes.from_decimal(text)


@pytest.mark.parametrize("text", ["", "18b", "0xZZ (0x0)", "0x1ffffffff (0x0)"])
def test_bad_param1_raises(text):
    with pytest.raises(ValueError):
        stopcodes.from_param1(text)
