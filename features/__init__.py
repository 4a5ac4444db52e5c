"""Video features: decoding, optical flow and the I3D extractor that turn raw videos into snippet features."""
