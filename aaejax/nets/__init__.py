"""Networks: the linen encoders, decoders and critics (:mod:`~aaejax.nets.networks`), their
convolutions (:mod:`~aaejax.nets.conv`, fast on XLA:CPU), the
frozen feature networks (:mod:`~aaejax.nets.effnet`, :mod:`~aaejax.nets.inception`) and
their weight readers (:mod:`~aaejax.nets.pth`, :mod:`~aaejax.nets.imagenet`)."""
