echo i > ignored.txt
echo ignored.txt > .dockerignore
