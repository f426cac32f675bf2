# Bazel cannot carry a file name with a backslash: made here.
printf 'x\n' > 'a\b.txt'
