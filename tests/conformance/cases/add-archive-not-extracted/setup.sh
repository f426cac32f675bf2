echo "not really an archive" > fake.tar.gz
echo notes > notes.txt
mkdir src && echo x > src/x && tar -cf real.tar -C src . && rm -rf src
echo "gzip, but no tar inside" | gzip -n > single.gz
