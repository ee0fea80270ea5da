"""The double attention (A^2) block of Chen et al., NeurIPS 2018, for 1-D, 2-D and 3-D inputs."""

import mxnet as mx
from mxnet.gluon import nn

from ._common import check_dims, check_input, conv1x1, fold4d, reduced, unfold4d

ASSOCIATIONS = ("left", "right")


def _value(F, param, x):
    """`param` as an operand of F's operators: its variable when tracing a symbol, else its
    value on x's device."""
    return param.var() if F is mx.sym else param.data(x.context)


class DoubleAttention(nn.HybridBlock):
    """Double attention block: gather features with second-order attention pooling, then
    distribute them to every location (paper eq. 6), in residual form.

    With X of c channels over L locations (L = h*w, or t*h*w for video)::

        A = phi(X)     (m x L)   features to gather
        B = theta(X)   (n x L)   n attention maps, softmax over the L locations
        V = rho(X)     (n x L)   attention vectors, softmax over the n maps at each location
        G = A softmax(B)^T        (m x n)  gathering: n global descriptors
        Z = G softmax(V)          (m x L)  distribution
        Y = X + norm(extend(Z))

    ``association='left'`` computes (A softmax(B)^T) softmax(V) with an m x n intermediate
    (what the paper uses, O(mnL)); ``'right'`` computes A (softmax(B)^T softmax(V)) with an
    L x L intermediate (O(mL^2), the Non-local-style pairwise form).  Both give the same Z.

    ``norm`` is a BatchNorm whose gamma starts at zero, so a freshly initialised block is the
    identity and can be inserted into a trained network without disturbing it.

    Implementation note: the four 1x1 convolutions run as 2-D convolutions on a 4-D view of the
    input (N x C x T*H x W for video, N x C x L x 1 for 1-D), which is the same arithmetic (a
    1x1x1 convolution acts on each location alone).  MXNet 1.9.1's oneDNN path gives wrong
    results when hybridized (and can crash) when a softmax reads a reshaped 5-D or 3-D
    convolution output in a blocked memory layout; the 4-D path is exact.  The weights are
    therefore c x m x 1 x 1 for every ``dims``, which also makes 2-D weights inflate as is.

    Parameters
    ----------
    in_channels : int
        c, the channels of the input (and of the output).
    m, n : int, optional
        Channels of A (features) and of B and V (descriptors).  Default in_channels // reduction.
    reduction : int
        Used for m and n when they are not given; the paper's ablations use 4.
    dims : int
        1, 2 (images, N x C x H x W) or 3 (video, N x C x T x H x W).
    association : {'left', 'right'}
        Order of the matrix products (see above).
    """

    def __init__(self, in_channels, m=None, n=None, reduction=4, dims=2, association="left", **kwargs):
        super().__init__(**kwargs)
        block = type(self).__name__
        check_dims(dims, block)
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels <= 0:
            raise ValueError(f"{block}: in_channels must be a positive integer, got {in_channels!r}")
        if association not in ASSOCIATIONS:
            raise ValueError(f"{block}: association must be 'left' or 'right', got {association!r}")
        self.in_channels = in_channels
        self.m = reduced(in_channels, m, reduction, "m", block)
        self.n = reduced(in_channels, n, reduction, "n", block)
        self.dims = dims
        self.association = association
        with self.name_scope():
            self.phi = conv1x1(2, self.m, in_channels, prefix="phi_")
            self.theta = conv1x1(2, self.n, in_channels, prefix="theta_")
            self.rho = conv1x1(2, self.n, in_channels, prefix="rho_")
            self.extend = conv1x1(2, in_channels, self.m, use_bias=False, prefix="extend_")
            self.norm = nn.BatchNorm(in_channels=in_channels, gamma_initializer="zeros", prefix="norm_")

    def forward(self, x, *args):
        check_input(x, self.in_channels, self.dims, type(self).__name__)
        return super().forward(x, *args)

    def _project(self, F, x):
        """A, B and V (each N x channels x H x W) from the 4-D view x.

        When m == n the three 1x1 convolutions run as one over their concatenated weights (x is
        read once by one oneDNN convolution with m + 2n outputs, then split): the same
        parameters (phi_, theta_, rho_; checkpoints and exports keep their names), the same
        multiply-adds and numbers, and 0.93x a2_resnet50's forward+backward time
        (benchmarks/NOTES.md).  The split must be `split` (SliceChannel): the slice_axis and
        split_v2 forms measured slower than three convolutions, so m != n keeps those."""
        if self.m != self.n:
            return self.phi(x), self.theta(x), self.rho(x)
        convs = (self.phi, self.theta, self.rho)
        weight = F.concat(*[_value(F, c.weight, x) for c in convs], dim=0, name="proj_weight")
        bias = F.concat(*[_value(F, c.bias, x) for c in convs], dim=0, name="proj_bias")
        y = F.Convolution(x, weight, bias, kernel=(1, 1), num_filter=self.m + 2 * self.n, name="proj")
        return F.split(y, num_outputs=3, axis=1, name="proj_split")

    def _attend(self, F, x):
        """The 4-D view of x, A (N x m x L, and its 4-D form), softmax(B) (N x n x L) and
        softmax(V) transposed (N x L x n).

        softmax(V) runs over the n descriptors at each location.  On V as N x n x L that is
        axis 1, which MXNet's CPU softmax walks with a stride (about 3x the time of a last-axis
        softmax); so V is transposed once, straight from the 4-D convolution output (one copy
        where a reshape to N x n x L would copy too, oneDNN's blocked layout to the default),
        and the softmax runs on its last axis.  The products then take V^T through
        batch_dot's transpose_b, with the same numbers and multiply-adds."""
        x = fold4d(x, self.dims)
        a_map, b_map, v_map = self._project(F, x)
        a = a_map.reshape((0, 0, -1))
        b = b_map.reshape((0, 0, -1))
        v_t = F.transpose(v_map, axes=(0, 2, 3, 1)).reshape((0, -3, 0))  # N x L x n
        attention_maps = F.softmax(b, axis=2)  # each of the n maps sums to 1 over L
        attention_vectors_t = F.softmax(v_t, axis=2)  # each location's vector sums to 1 over n
        return x, a_map, a, attention_maps, attention_vectors_t

    def attention_weights(self, x):
        """(softmax(B), softmax(V)) for an NDArray input, each N x n x L."""
        check_input(x, self.in_channels, self.dims, type(self).__name__)
        _, _, _, maps, vectors_t = self._attend(mx.nd, x)
        return maps, vectors_t.transpose((0, 2, 1))

    def hybrid_forward(self, F, x):
        x4, a_map, a, attention_maps, attention_vectors_t = self._attend(F, x)
        if self.association == "left":
            descriptors = F.batch_dot(a, attention_maps, transpose_b=True)  # N x m x n
            z = F.batch_dot(descriptors, attention_vectors_t, transpose_b=True)  # N x m x L
        else:
            relation = F.batch_dot(
                attention_maps, attention_vectors_t, transpose_a=True, transpose_b=True
            )  # N x L x L
            z = F.batch_dot(a, relation)  # N x m x L
        z = F.reshape_like(z, a_map)
        out = x4 + self.norm(self.extend(z))
        return unfold4d(F, out, x, self.dims)

    def __repr__(self):
        return (
            f"{type(self).__name__}(in_channels={self.in_channels}, m={self.m}, n={self.n}, "
            f"dims={self.dims}, association={self.association!r})"
        )
