"""The Embedded Gaussian Non-local block (Wang et al., CVPR 2018), the paper's baseline."""

from mxnet.gluon import nn

from ._common import (
    check_dims,
    check_input,
    conv1x1,
    default_layout,
    fold4d,
    maxpool_spatial,
    reduced,
    unfold4d,
)


class NonLocal(nn.HybridBlock):
    """Embedded Gaussian Non-local block, with the same residual conventions as
    :class:`~a2gluon.nn.DoubleAttention` (``extend`` 1x1 convolution, zero-gamma ``norm``).

    ::

        f   = softmax_j(theta(x_i)^T phi(x_j) * scale)   (L x L', softmax over j)
        y_i = sum_j f_ij g(x_j)
        Y   = X + norm(extend(y))

    Parameters
    ----------
    in_channels : int
        Channels of the input and output.
    inner : int, optional
        Channels of theta, phi and g.  Default in_channels // reduction.
    reduction : int
        Used for inner when it is not given; the A^2-Nets paper compares at 4.
    dims : int
        1, 2 or 3.
    subsample : bool
        Max-pool phi and g by 2 over the spatial axes (L' = L / 4).  The A^2-Nets comparison
        uses no sub-sampling, hence the default.
    scale : bool
        Divide the pairwise term by sqrt(inner), as the Non-local authors' released code does.

    As in :class:`~a2gluon.nn.DoubleAttention`, the 1x1 convolutions run on a 4-D view of the
    input (MXNet 1.9.1's oneDNN path fails on some 3-D and 5-D layouts); sub-sampling pools
    the un-folded view, 1x2x2 for video.
    """

    def __init__(self, in_channels, inner=None, reduction=4, dims=2, subsample=False, scale=True, **kwargs):
        super().__init__(**kwargs)
        block = type(self).__name__
        check_dims(dims, block)
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels <= 0:
            raise ValueError(f"{block}: in_channels must be a positive integer, got {in_channels!r}")
        self.in_channels = in_channels
        self.inner = reduced(in_channels, inner, reduction, "inner", block)
        self.dims = dims
        self.subsample = bool(subsample)
        self.scale = self.inner**-0.5 if scale else 1.0
        with self.name_scope():
            self.theta = conv1x1(2, self.inner, in_channels, prefix="theta_")
            self.phi = conv1x1(2, self.inner, in_channels, prefix="phi_")
            self.g = conv1x1(2, self.inner, in_channels, prefix="g_")
            self.pool = maxpool_spatial(dims) if self.subsample else None  # a 2-D pooling, see _pool
            self.extend = conv1x1(2, in_channels, self.inner, use_bias=False, prefix="extend_")
            self.norm = nn.BatchNorm(in_channels=in_channels, gamma_initializer="zeros", prefix="norm_")

    def forward(self, x, *args):
        check_input(x, self.in_channels, self.dims, type(self).__name__)
        return super().forward(x, *args)

    def _pool(self, F, y, x):
        """Max-pool y (N x d x 4-D view of x's positions) by 2 over x's spatial axes, in 4-D:
        a video's frames are folded into channels (N x d*T x H x W), so pooling stays 1x2x2."""
        if self.dims == 3:
            y = F.reshape_like(default_layout(F, y), x, lhs_begin=2, lhs_end=3, rhs_begin=2, rhs_end=4)
            y = y.reshape((0, -3, 0, 0))
        return self.pool(y)

    def hybrid_forward(self, F, x):
        x4 = fold4d(x, self.dims)
        theta_map = self.theta(x4)
        phi, g = self.phi(x4), self.g(x4)
        if self.pool is not None:
            phi, g = self._pool(F, phi, x), self._pool(F, g, x)
        theta = theta_map.reshape((0, 0, -1))  # N x d x L
        phi = phi.reshape((0, self.inner, -1))  # N x d x L'
        g = g.reshape((0, self.inner, -1))  # N x d x L'
        pairwise = F.batch_dot(theta, phi, transpose_a=True)  # N x L x L'
        if self.scale != 1.0:
            pairwise = pairwise * self.scale
        f = F.softmax(pairwise, axis=2)
        y = F.batch_dot(g, f, transpose_b=True)  # N x d x L
        y = F.reshape_like(y, theta_map)
        out = x4 + self.norm(self.extend(y))
        return unfold4d(F, out, x, self.dims)

    def __repr__(self):
        return (
            f"{type(self).__name__}(in_channels={self.in_channels}, inner={self.inner}, "
            f"dims={self.dims}, subsample={self.subsample})"
        )
