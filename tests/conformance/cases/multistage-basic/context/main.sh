echo "built from source"
