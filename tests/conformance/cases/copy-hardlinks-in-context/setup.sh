mkdir -p dir/sub
echo same > dir/one
ln dir/one dir/two
ln dir/one dir/sub/three
