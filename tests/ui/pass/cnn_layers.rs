// The convolution, pooling and reshaping layers with their Keras arguments.
use kiln::prelude::*;

model! {
    /// Images: same-padded strided and dilated convolutions, both poolings, zero padding.
    pub Images(x: [12, 10, 3])
        -> zero_padding2d(1)
        -> conv2d(8, (3, 3), strides = 2, padding = same, activation = relu)
        -> conv2d(4, 2, dilation_rate = (1, 2), use_bias = false)
        -> max_pool2d(pool_size = 3, strides = 1, padding = same)
        -> avg_pool2d(2)
        -> global_avg_pool2d()
        -> dense(2)

    /// Sequences: causal convolution, 1-D pooling, a reshape.
    /// Zero padding of `((top, bottom), (left, right))`: [2, 3, 1] → [3, 8, 1].
    pub Padded(x: [2, 3, 1]) -> zero_padding2d(((1, 0), (2, 3))) -> flatten() -> dense(1)

    pub Steps(x: [20]) -> reshape((10, 2)) -> conv1d(6, 3, padding = causal) -> avg_pool1d(2) -> max_pool1d(2, padding = same) -> global_max_pool1d()
}

fn main() {
    // 3·3·3·8 + 8 + 2·2·8·4 + 4·2 + 2, and 3·2·6 + 6.
    assert_eq!(Images::new(0).parameter_count(), 216 + 8 + 128 + 8 + 2);
    assert_eq!(Steps::new(0).parameter_count(), 36 + 6);
    assert_eq!(Padded::new(0).parameter_count(), 3 * 8 + 1);
}
