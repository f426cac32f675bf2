mkdir -p empty tree/a/b/c tree/d
