mkdir -p src/dir/sub
echo a > src/a.txt
echo b > src/dir/b.txt
printf "#!/bin/sh\n" > src/dir/run.sh && chmod 750 src/dir/run.sh
ln -s a.txt src/link
ln src/a.txt src/dir/hard
mkdir -p src/empty && chmod 700 src/empty
tar --owner=1234 --group=5678 -cf archive.tar -C src . && rm -rf src
