# A file whose name is a glob pattern (made here: Bazel does not like such names).
echo b > 'br[a]ckets.txt'
