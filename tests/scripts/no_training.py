# A script that trains nothing steptrace can trace (steptrace's own test script): plain
# Python arithmetic, its arguments, working directory and __name__ printed so the test can
# compare them with `python no_training.py ...`.
import os
import sys

print("argv", sys.argv[1:])
print("name", __name__)
print("cwd", os.getcwd())
print("path0", sys.path[0])
print("file", os.path.basename(__file__))
print("mean", sum([1, 2, 3, 4]) / 4)
