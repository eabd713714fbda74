"""Dataset mappers whose errors name the file that caused them."""

from detectron2.data import DatasetMapper


class ImageReadError(OSError):
    """An image file could not be read or decoded."""


class CheckedDatasetMapper(DatasetMapper):
    """
    :class:`DatasetMapper` that turns an unreadable, truncated or corrupt image into an
    :class:`ImageReadError` naming the file (detectron2 reports such files through a file object,
    or not at all). Mapping itself is unchanged.
    """

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except OSError as e:  # PIL.UnidentifiedImageError, truncated files, missing files
            if isinstance(e, ImageReadError):
                raise
            raise ImageReadError(
                f"Could not read image {dataset_dict.get('file_name')}: {e}"
            ) from e
