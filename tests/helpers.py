"""What several tests share: the repository root, the reference files, and the SSD300 geometry."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
# The model zoo's SSD300 input geometry (300x300, 1917 default boxes, IoU 0.5 matching) over the defaults,
# whose built-in quick-start run uses a smaller input; the reference files in tests/fixtures are for this one.
SSD300_ARGS = ["--img_shape=[300,300]", "--feature_size=[19,10,5,3,2,1]", "--steps=[16,32,64,100,150,300]",
               "--num_ssd_boxes=1917", "--match_threshold=0.5"]
