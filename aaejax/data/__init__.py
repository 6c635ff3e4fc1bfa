"""Data: loaders of MNIST-like data sets, labelled subsets, the on-device input pipeline.

:mod:`~aaejax.data.loaders` (IDX files, tfds fallback, :func:`load_numpy`),
:mod:`~aaejax.data.subsets` (labelled subsets and the unlabelled rest),
:mod:`~aaejax.data.device` (:class:`DeviceDataset`, on-device shuffling and batching,
:func:`batches` for a loop of your own),
:mod:`~aaejax.data.downloads` (first-use downloads), :mod:`~aaejax.data.celeba` and
:mod:`~aaejax.data.mnistm` (data sets with loaders of their own) and
:mod:`~aaejax.data.batching` (a function over many examples in chunks). The public names of
the first three are here.
"""

from aaejax.data.device import (DeviceDataset, batches, epoch_permutation, gather_batch,
                                load_device_dataset, to_float)
from aaejax.data.loaders import (DATA_DIR_ENV, EXTRA_DATA_DIRS, IDX_FILES, IMAGE_SHAPES,
                                 NUM_CLASSES, OWN_LOADERS, OWN_LOADERS_FROM_MNIST, SPLITS,
                                 SUPPORTED_DATASETS, DataFileError, DatasetNotFoundError,
                                 has_labels, load_numpy, read_idx, resolve_data_dir, source)
from aaejax.data.subsets import balanced_labeled_subset, labeled_subset, unlabeled_rest
