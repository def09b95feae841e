import pytest

from convnet.shapes import check_conv_operands, conv_output_size, conv_overhang, pool_output_size


def test_alexnet_sizes_follow_cuda_convnet():
    assert conv_output_size(224, 11, 4, 0) == 55
    assert conv_overhang(224, 11, 4, 0) == 3          # conv1 reads 3 zero pixels right/bottom
    assert [pool_output_size(s, 3, 2) for s in (55, 27, 13)] == [27, 13, 6]
    assert conv_output_size(27, 5, 1, 2) == 27 and conv_output_size(13, 3, 1, 1) == 13


def test_ceil_rule_keeps_a_partial_last_window():
    assert conv_output_size(10, 3, 4, 0) == 3           # floor rule would give 2
    assert conv_overhang(10, 3, 4, 0) == 1
    assert pool_output_size(24, 3, 2) == 12


def test_without_overhang_only_whole_windows():
    """The non-overlapping ablation's 2 × 2 pools keep the 3 × 3 pools' sizes (55 → 27 → 13
    → 6) where an overhanging last window would add a row and a column."""
    assert [pool_output_size(s, 2, 2, overhang=False) for s in (55, 27, 13)] == [27, 13, 6]
    assert [pool_output_size(s, 2, 2) for s in (55, 27, 13)] == [28, 14, 7]
    assert pool_output_size(24, 3, 2, overhang=False) == 11
    assert pool_output_size(8, 2, 2, overhang=False) == pool_output_size(8, 2, 2) == 4


@pytest.mark.parametrize("call,wrong", [
    (lambda: conv_output_size(4, 7, 1, 1), "a 7-pixel filter does not fit a 4-pixel input"),
    (lambda: conv_output_size(8, 3, 0, 0), "stride >= 1 .* stride=0"),
    (lambda: pool_output_size(2, 3, 2), "a 3-pixel pooling window does not fit a 2-pixel"),
    (lambda: conv_output_size(8, 3, 1, -1), "pad >= 0; .* pad=-1")])
def test_impossible_geometry_is_refused(call, wrong):
    with pytest.raises(ValueError, match=wrong):
        call()


@pytest.mark.parametrize("x_shape,w_shape,wrong", [
    ((3, 8, 8), (3, 3, 3, 4), r"conv expects x \(C,H,W,N\) .* got shapes \(3, 8, 8\)"),
    ((3, 8, 8, 2), (2, 3, 3, 4), "conv input has 3 channels but filters expect 2"),
    ((3, 8, 8, 2), (3, 3, 5, 4), "conv filters must be square; got 3x5")])
def test_conv_operands_that_do_not_go_together_are_refused(x_shape, w_shape, wrong):
    check_conv_operands((3, 8, 8, 2), (3, 3, 3, 4))
    with pytest.raises(ValueError, match=wrong):
        check_conv_operands(x_shape, w_shape)


def test_a_filter_or_window_as_large_as_the_padded_input_fits():
    """The limits are inclusive: a filter may span the input and both paddings, a pooling window
    the whole input (one output each)."""
    assert conv_output_size(4, 6, 1, 1) == 1 and conv_overhang(4, 6, 1, 1) == 1
    assert conv_output_size(13, 13, 1, 0) == 1
    assert pool_output_size(6, 6, 2) == 1
    assert pool_output_size(6, 6, 2, overhang=False) == 1


def test_a_padded_convolution_overhangs_by_its_own_padding_once():
    """The zeros after the image that the last window reads: conv2 (5 × 5, pad 2, on 27) and
    conv3 (3 × 3, pad 1, on 13) read their padding's 2 and 1 columns, no more, so that a
    convolution padded (pad, overhang) keeps its size; at stride 2 the last window reaches
    one column past the padding on 10 pixels."""
    assert conv_overhang(27, 5, 1, 2) == 2 and conv_overhang(13, 3, 1, 1) == 1
    assert conv_output_size(10, 3, 2, 1) == 6 and conv_overhang(10, 3, 2, 1) == 2
