"""Hypothesis strategies shared by the CBOR codec's tests."""

from __future__ import annotations

from hypothesis import strategies as st

leaf = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
)
# Random CBOR-able values: what cbor.dumps must encode as cbor2's canonical mode does.
values = st.recursive(
    leaf,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5),
    max_leaves=30,
)
