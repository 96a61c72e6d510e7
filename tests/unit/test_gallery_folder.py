"""The repo's sample gallery (samples/gallery) read as a folder gallery: every person, in their category. The
encoder is a stand-in (no face model), so this checks the listing and the layout only."""

import numpy as np

from facebus.events import Category
from recognizer.gallery import FolderSource, GalleryLoader
from tests.conftest import GALLERY


def test_folder_gallery_lists_every_sample_person():
    loader = GalleryLoader(FolderSource(GALLERY), lambda data: np.zeros(128))
    loader.refresh()
    index = loader.index
    assert len(index.people) == 22 and not loader.rejected
    assert {e.category for e in index.entries if e.person == "Alex_Lacamoire"} == {Category.restricted}
